//! A bounded YAML reader for `clouds.yaml` and `secure.yaml`: maps, lists and scalars, nothing
//! more.
//!
//! Built on `yaml-rust2`'s event parser rather than its document loader for two reasons: aliases
//! are expanded under a node budget (the loader clones them without limit, so a few hundred bytes
//! of nested aliases can exhaust memory), and `<<` merge keys work as they do for openstacksdk
//! (PyYAML), which the loader does not support. As with PyYAML, a repeated key keeps its last
//! value.

use std::collections::HashMap;

use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Event;

/// Nodes a document may expand to, aliases included. A clouds.yaml has a few dozen.
const MAX_NODES: usize = 100_000;

/// A YAML value with every scalar kept as written (`3`, `true` and `"3"` are all text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Null,
    Scalar(String),
    List(Vec<Node>),
    /// Keys in document order, each once.
    Map(Vec<(String, Node)>),
}

impl Node {
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses one YAML document; an empty text is [`Node::Null`].
pub(crate) fn parse(text: &str) -> Result<Node, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| e.to_string())?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    match builder.documents.len() {
        0 => Ok(Node::Null),
        1 => Ok(builder.documents.pop().unwrap_or(Node::Null)),
        n => Err(format!("holds {n} YAML documents; a config file holds one")),
    }
}

enum Frame {
    List {
        anchor: usize,
        items: Vec<Node>,
        size: usize,
    },
    Map {
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        size: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored nodes with their expanded size.
    anchors: HashMap<usize, (Node, usize)>,
    documents: Vec<Node>,
    nodes: usize,
    error: Option<String>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(ev) {
            self.error = Some(format!("{e} at line {}", mark.line()));
        }
    }
}

impl Builder {
    fn count(&mut self, n: usize) -> Result<(), String> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(format!(
                "expands to more than {MAX_NODES} values (aliases nested too deep?)"
            ));
        }
        Ok(())
    }

    fn event(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1)?;
                let null_tag = tag.as_ref().is_some_and(|t| t.suffix == "null");
                let node = if null_tag
                    || (style == TScalarStyle::Plain
                        && tag.is_none()
                        && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
                {
                    Node::Null
                } else {
                    Node::Scalar(value)
                };
                self.insert(node, anchor, 1)
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1)?;
                self.stack.push(Frame::List {
                    anchor,
                    items: Vec::new(),
                    size: 1,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.count(1)?;
                self.stack.push(Frame::Map {
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    size: 1,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::List {
                    anchor,
                    items,
                    size,
                }) => self.insert(Node::List(items), anchor, size),
                Some(Frame::Map {
                    anchor,
                    entries,
                    size,
                    ..
                }) => self.insert(mapping(entries)?, anchor, size),
                None => Err("unbalanced collection".to_string()),
            },
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| "an alias names an unknown anchor".to_string())?;
                self.count(size)?;
                self.insert(node, 0, size)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => Ok(()),
        }
    }

    fn insert(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), String> {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::List {
                items, size: total, ..
            }) => {
                items.push(node);
                *total += size;
            }
            Some(Frame::Map {
                entries,
                key,
                size: total,
                ..
            }) => {
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                }
                *total += size;
            }
        }
        Ok(())
    }
}

/// A finished mapping: scalar keys, the last of a repeated key, `<<` merges as defaults.
fn mapping(entries: Vec<(Node, Node)>) -> Result<Node, String> {
    let mut own: Vec<(String, Node)> = Vec::with_capacity(entries.len());
    let mut merged: Vec<(String, Node)> = Vec::new();
    for (key, value) in entries {
        let key = match key {
            Node::Scalar(k) => k,
            Node::Null => "null".to_string(),
            _ => return Err("a mapping key is not plain text".to_string()),
        };
        if key == "<<" {
            let sources = match value {
                Node::List(items) => items,
                one => vec![one],
            };
            for source in sources {
                match source {
                    // Earlier sources win over later ones.
                    Node::Map(m) => {
                        for (k, v) in m {
                            if !merged.iter().any(|(mk, _)| *mk == k) {
                                merged.push((k, v));
                            }
                        }
                    }
                    _ => return Err("a << merge names something that is not a mapping".into()),
                }
            }
            continue;
        }
        match own.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => own.push((key, value)),
        }
    }
    for (k, v) in merged {
        if !own.iter().any(|(ok, _)| *ok == k) {
            own.push((k, v));
        }
    }
    Ok(Node::Map(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Node {
        Node::Scalar(v.to_string())
    }

    #[test]
    fn scalars_stay_text_and_plain_nulls_are_null() {
        let n = parse("a: 3\nb: 'null'\nc: ~\nd:\ne: true\nf: \"x y\"\n").unwrap();
        assert_eq!(n.get("a"), Some(&s("3")));
        assert_eq!(n.get("b"), Some(&s("null")));
        assert_eq!(n.get("c"), Some(&Node::Null));
        assert_eq!(n.get("d"), Some(&Node::Null));
        assert_eq!(n.get("e"), Some(&s("true")));
        assert_eq!(n.get("f"), Some(&s("x y")));
        assert_eq!(n.get("g"), None);
        assert_eq!(parse("").unwrap(), Node::Null);
        assert_eq!(parse("# only a comment\n").unwrap(), Node::Null);
    }

    #[test]
    fn anchors_aliases_and_merge_keys_work_as_in_pyyaml() {
        let text = "\
base: &base
  auth_url: https://k.example/v3
  region_name: One
clouds:
  a:
    <<: *base
    region_name: Two
  b:
    <<: [{x: first}, {x: second, y: second}]
    list: [*base]
";
        let n = parse(text).unwrap();
        let a = n.get("clouds").unwrap().get("a").unwrap();
        assert_eq!(a.get("region_name"), Some(&s("Two")));
        assert_eq!(a.get("auth_url"), Some(&s("https://k.example/v3")));
        let b = n.get("clouds").unwrap().get("b").unwrap();
        assert_eq!(b.get("x"), Some(&s("first")));
        assert_eq!(b.get("y"), Some(&s("second")));
        match b.get("list") {
            Some(Node::List(items)) => assert_eq!(items[0].get("region_name"), Some(&s("One"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let n = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(n, Node::Map(vec![("a".into(), s("2"))]));
    }

    #[test]
    fn alias_bombs_stop_at_the_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.contains("expands to more than 100000 values"), "{err}");
    }

    #[test]
    fn broken_documents_say_where() {
        let err = parse("clouds:\n  a: [unclosed\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
        let err = parse("? [a, b]\n: c\n").unwrap_err();
        assert!(err.contains("not plain text"), "{err}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.contains("2 YAML documents"), "{err}");
        assert!(parse("a: *nowhere\n").is_err());
    }
}
