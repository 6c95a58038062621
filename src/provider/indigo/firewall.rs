//! Indigo firewall templates: read and classify, then apply a plan in one wholesale update.
//!
//! dynwall owns the inbound rules of type `Custom` with the entry's protocol and port. Every
//! other rule is written back exactly as it was read; a rule whose fields are not all text
//! (`"source": null`, a number) cannot be, so a template holding one is not written at all.
//! `updatefirewall` also replaces the template's instance assignment with the list sent, so the
//! configured instances must all exist (checked against `getinstancelist`, remembered as a fact
//! until a write fails or the engine drops it as too old).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{expect_success, mutation_result, IndigoClient};
use super::model::{self, text, TemplateRule};
use crate::config::FirewallConfig;
use crate::net::IpNet;
use crate::provider::{
    CloudFacts, FirewallId, FirewallSnapshot, Firewalls, OwnedRule, OwnedSource, Plan, Power,
    Private, ProviderError, RuleHandle,
};

/// The rule type dynwall owns (and writes).
pub const OWNED_KIND: &str = "Custom";

/// One rule of a template as read.
#[derive(Clone, Debug)]
struct Row {
    inbound: bool,
    rule: TemplateRule,
    owned: bool,
}

/// A template as read: what a write needs to carry every other rule over.
#[derive(Clone, Debug)]
struct Template {
    name: Option<String>,
    rows: Vec<Row>,
}

/// True when an inbound rule belongs to dynwall under `fw`.
fn is_owned(rule: &TemplateRule, fw: &FirewallConfig) -> bool {
    let eq = |v: &Value, want: &str| text(v).is_some_and(|t| t.trim().eq_ignore_ascii_case(want));
    eq(&rule.kind, OWNED_KIND)
        && eq(&rule.protocol, &fw.protocol)
        && text(&rule.port).is_some_and(|p| p.trim() == fw.port)
}

/// A field for display: text as is, anything else as JSON.
fn shown(v: &Value) -> String {
    text(v).unwrap_or_else(|| v.to_string())
}

/// A normalised line for a rule dynwall does not own (compared before and after a write).
fn line(inbound: bool, r: &TemplateRule) -> String {
    let source = shown(&r.source);
    let source = source
        .trim()
        .parse::<IpNet>()
        .map_or_else(|_| source.trim().to_string(), |n| n.to_string());
    format!(
        "{} {} {} {} {}",
        if inbound { "in" } else { "out" },
        shown(&r.kind).trim().to_ascii_lowercase(),
        shown(&r.protocol).trim().to_ascii_uppercase(),
        shown(&r.port).trim(),
        source
    )
}

/// Why `r` cannot be written back exactly, if it cannot.
fn not_exact(r: &TemplateRule) -> Option<String> {
    [
        ("type", &r.kind),
        ("protocol", &r.protocol),
        ("port", &r.port),
        ("source", &r.source),
    ]
    .into_iter()
    .find(|(_, v)| !v.is_string())
    .map(|(field, v)| format!("its {field} is {v}, not text"))
}

/// Classifies `gettemplate` rows under `fw`. Pure.
pub(super) fn classify(
    fw: &FirewallConfig,
    rows: Vec<TemplateRule>,
) -> Result<FirewallSnapshot, ProviderError> {
    let mut name = None;
    let mut kept = Vec::with_capacity(rows.len());
    let (mut owned, mut others) = (Vec::new(), Vec::new());
    let (mut inbound, mut outbound) = (0, 0);
    let mut unwritable = None;
    for (i, rule) in rows.into_iter().enumerate() {
        let is_in = match rule.direction.as_str() {
            "in" => true,
            "out" => false,
            other => {
                return Err(ProviderError::Malformed {
                    op: "gettemplate",
                    reason: format!("rule direction {other:?} is neither \"in\" nor \"out\""),
                })
            }
        };
        if name.is_none() {
            name = rule
                .name
                .as_ref()
                .map(|n| n.0.clone())
                .filter(|n| !n.is_empty());
        }
        if is_in {
            inbound += 1;
        } else {
            outbound += 1;
        }
        let mine = is_in && is_owned(&rule, fw);
        if mine {
            let source = match text(&rule.source) {
                Some(s) => match s.trim().parse::<IpNet>() {
                    Ok(net) => OwnedSource::Net(net),
                    Err(_) => OwnedSource::Unreadable(s),
                },
                None => OwnedSource::Unreadable(rule.source.to_string()),
            };
            owned.push(OwnedRule {
                handle: RuleHandle(i.to_string()),
                source,
            });
        } else {
            let l = line(is_in, &rule);
            if unwritable.is_none() {
                unwritable = not_exact(&rule).map(|why| {
                    format!("rule \"{l}\" cannot be carried over exactly: {why}; fix or delete it by hand")
                });
            }
            others.push(l);
        }
        kept.push(Row {
            inbound: is_in,
            rule,
            owned: mine,
        });
    }
    Ok(FirewallSnapshot {
        id: fw.id.clone(),
        name: name.clone(),
        owned,
        others,
        inbound,
        outbound,
        unwritable,
        private: Private(Arc::new(Template { name, rows: kept })),
    })
}

/// The owned rule for `net`, as dynwall writes it (hosts bare, as the seeds do).
fn owned_rule(fw: &FirewallConfig, net: &IpNet) -> Value {
    serde_json::json!({
        "type": OWNED_KIND,
        "protocol": fw.protocol,
        "port": fw.port,
        "source": net.to_string(),
    })
}

/// A foreign rule exactly as it was read.
fn exact_rule(r: &TemplateRule) -> Value {
    serde_json::json!({
        "type": r.kind,
        "protocol": r.protocol,
        "port": r.port,
        "source": r.source,
    })
}

/// The `inbound` and `outbound` lists of an update carrying out `plan` on `t`. Pure.
fn rules_for(fw: &FirewallConfig, t: &Template, plan: &Plan) -> (Vec<Value>, Vec<Value>) {
    let keep: BTreeSet<&RuleHandle> = plan.keep.iter().map(|r| &r.handle).collect();
    let kept_sources: Vec<(&RuleHandle, IpNet)> = plan
        .keep
        .iter()
        .filter_map(|r| match r.source {
            OwnedSource::Net(n) => Some((&r.handle, n)),
            OwnedSource::Unreadable(_) => None,
        })
        .collect();
    let (mut inbound, mut outbound) = (Vec::new(), Vec::new());
    for (i, row) in t.rows.iter().enumerate() {
        let handle = RuleHandle(i.to_string());
        let out = if row.inbound {
            &mut inbound
        } else {
            &mut outbound
        };
        if !row.owned {
            out.push(exact_rule(&row.rule));
        } else if keep.contains(&handle) {
            // Kept owned rules are written the way dynwall writes them (`x/32` becomes `x`).
            if let Some((_, net)) = kept_sources.iter().find(|(h, _)| **h == handle) {
                out.push(owned_rule(fw, net));
            }
        }
    }
    inbound.extend(plan.add.iter().map(|net| owned_rule(fw, net)));
    (inbound, outbound)
}

impl IndigoClient {
    /// Looks up a template's name in `getfirewalllist` (needed to update a template without rules).
    async fn firewall_name(&self, id: &FirewallId) -> Result<String, ProviderError> {
        let op = "getfirewalllist";
        let a = self
            .call(
                op,
                Method::GET,
                "/webarenaIndigo/v1/nw/getfirewalllist",
                None,
            )
            .await?;
        expect_success(op, &a)?;
        let list: Vec<model::FirewallListItem> = a.json(op)?;
        list.into_iter()
            .find(|f| f.id.0 == id.0)
            .map(|f| f.name)
            .ok_or_else(|| ProviderError::NotFound {
                op,
                what: format!("firewall template {id}"),
            })
    }

    /// The write preflight: every configured instance exists (a fact remembered in `facts`).
    async fn check_instances(
        &self,
        fw: &FirewallConfig,
        facts: &mut CloudFacts,
    ) -> Result<(), ProviderError> {
        let covered = facts
            .instances
            .as_ref()
            .is_some_and(|known| fw.instances.iter().all(|i| known.contains(i)));
        if covered {
            return Ok(());
        }
        // Unknown, or some id missing from what we remember: the list may have been read before
        // the instance was created. Ask.
        let known: BTreeSet<_> = self
            .list_instances()
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let missing: Vec<_> = fw
            .instances
            .iter()
            .filter(|i| !known.contains(*i))
            .cloned()
            .collect();
        facts.instances = Some(known);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::UnknownInstances { missing })
        }
    }
}

#[async_trait]
impl Firewalls for IndigoClient {
    async fn read_firewall(&self, fw: &FirewallConfig) -> Result<FirewallSnapshot, ProviderError> {
        let op = "gettemplate";
        let path = format!("/webarenaIndigo/v1/nw/gettemplate/{}", fw.id.0);
        let a = self.call(op, Method::GET, &path, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Err(ProviderError::NotFound {
                op,
                what: format!("firewall template {}", fw.id),
            });
        }
        expect_success(op, &a)?;
        let rows: Vec<TemplateRule> = a.json(op)?;
        classify(fw, rows)
    }

    async fn apply(
        &self,
        fw: &FirewallConfig,
        current: &FirewallSnapshot,
        plan: &Plan,
        facts: &mut CloudFacts,
    ) -> Result<(), ProviderError> {
        let op = "updatefirewall";
        if let Some(why) = &current.unwritable {
            return Err(ProviderError::Malformed {
                op,
                reason: why.clone(),
            });
        }
        let Some(t) = current.private.0.downcast_ref::<Template>() else {
            return Err(ProviderError::Malformed {
                op,
                reason: "the snapshot was not read by the Indigo client".into(),
            });
        };
        self.check_instances(fw, facts).await?;
        let name = match &t.name {
            Some(n) => n.clone(),
            None => self.firewall_name(&fw.id).await?,
        };
        let (inbound, outbound) = rules_for(fw, t, plan);
        let body = serde_json::json!({
            "templateid": fw.id.0,
            "name": name,
            "inbound": inbound,
            "outbound": outbound,
            "instances": fw.instances.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
        });
        let result = match self
            .call(
                op,
                Method::PUT,
                "/webarenaIndigo/v1/nw/updatefirewall",
                Some(body),
            )
            .await
        {
            Ok(a) => mutation_result(op, &a).map(|_| ()),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Check the instances again before the next write.
            facts.instances = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tracked;
    use crate::ids::{CloudName, InstanceId};

    fn fw() -> FirewallConfig {
        FirewallConfig {
            cloud: CloudName::indigo(),
            id: FirewallId("9".into()),
            instances: vec![InstanceId("1".into())],
            protocol: "TCP".into(),
            port: "22".into(),
            keep: vec![],
            family: Tracked::Ipv4,
        }
    }

    fn rows(json: &str) -> Vec<TemplateRule> {
        serde_json::from_str(json).unwrap()
    }

    const TEMPLATE: &str = r#"[
        {"id":9,"name":"web","direction":"out","type":"Custom","protocol":"ICMP","port":"","source":"0.0.0.0\/0"},
        {"id":9,"name":"web","direction":"in","type":"custom","protocol":"tcp","port":" 22","source":"81.2.69.160\/32"},
        {"id":9,"name":"web","direction":"in","type":"HTTPS","protocol":"TCP","port":"443","source":"0.0.0.0\/0"},
        {"id":9,"name":"web","direction":"in","type":"Custom","protocol":"TCP","port":"22","source":"not-an-address"},
        {"id":9,"name":"web","direction":"in","type":"Custom","protocol":"UDP","port":"22","source":"81.2.69.7"}]"#;

    #[test]
    fn the_provider_classifies_owned_and_foreign_rules() {
        let s = classify(&fw(), rows(TEMPLATE)).unwrap();
        assert_eq!(s.name.as_deref(), Some("web"));
        assert_eq!((s.inbound, s.outbound), (4, 1));
        assert_eq!(
            s.owned,
            vec![
                OwnedRule {
                    handle: RuleHandle("1".into()),
                    source: OwnedSource::Net("81.2.69.160".parse().unwrap()),
                },
                OwnedRule {
                    handle: RuleHandle("3".into()),
                    source: OwnedSource::Unreadable("not-an-address".into()),
                },
            ]
        );
        assert_eq!(
            s.others,
            vec![
                "out custom ICMP  0.0.0.0/0",
                "in https TCP 443 0.0.0.0/0",
                "in custom UDP 22 81.2.69.7",
            ]
        );
        assert_eq!(s.unwritable, None);
        let odd = rows(
            r#"[{"direction":"sideways","type":"x","protocol":"TCP","port":"1","source":"1.1.1.1"}]"#,
        );
        assert!(classify(&fw(), odd).is_err());
    }

    #[test]
    fn a_write_carries_foreign_rules_over_exactly_and_writes_owned_rules_bare() {
        let s = classify(&fw(), rows(TEMPLATE)).unwrap();
        let t = s.private.0.downcast_ref::<Template>().unwrap();
        let plan = Plan {
            keep: vec![s.owned[0].clone()],
            add: vec!["81.2.69.161".parse().unwrap()],
            remove: vec![s.owned[1].clone()],
        };
        let (inbound, outbound) = rules_for(&fw(), t, &plan);
        let rule = |k: &str, p: &str, port: &str, src: &str| serde_json::json!({"type": k, "protocol": p, "port": port, "source": src});
        assert_eq!(
            inbound,
            vec![
                rule("Custom", "TCP", "22", "81.2.69.160"),
                rule("HTTPS", "TCP", "443", "0.0.0.0/0"),
                rule("Custom", "UDP", "22", "81.2.69.7"),
                rule("Custom", "TCP", "22", "81.2.69.161"),
            ]
        );
        assert_eq!(outbound, vec![rule("Custom", "ICMP", "", "0.0.0.0/0")]);
    }

    #[test]
    fn a_foreign_rule_that_is_not_text_makes_the_template_unwritable() {
        for (field, value) in [("source", "null"), ("port", "443"), ("protocol", "6")] {
            let mut r = serde_json::json!({"direction":"in","type":"HTTPS","protocol":"TCP","port":"443","source":"0.0.0.0/0"});
            r[field] = serde_json::from_str(value).unwrap();
            let all = serde_json::json!([r]).to_string();
            let s = classify(&fw(), rows(&all)).unwrap();
            let why = s.unwritable.expect("refused");
            assert!(why.contains(&format!("its {field} is {value}")), "{why}");
        }
        // An owned rule with a null source is simply ours to remove.
        let s = classify(
            &fw(),
            rows(
                r#"[{"direction":"in","type":"Custom","protocol":"TCP","port":22,"source":null}]"#,
            ),
        )
        .unwrap();
        assert_eq!(s.unwritable, None);
        assert_eq!(s.owned[0].source, OwnedSource::Unreadable("null".into()));
    }
}
