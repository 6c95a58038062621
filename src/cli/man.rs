//! The manual page, dynwall(1): one page for the commands, their options, every configuration
//! key, the files, the environment, the signals and the exit codes. The commands and options come
//! from the clap definitions, so they cannot drift from `--help`.

use clap::CommandFactory;
use roff::{bold, italic, roman, Inline, Roff};

use super::Cli;

/// The man page (roff, section 1).
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    let preamble = Roff::new().render();
    for render in [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        let mut part = Vec::new();
        render(&man, &mut part)?;
        // Each part starts with the same apostrophe preamble; once is enough.
        out.extend_from_slice(part.strip_prefix(preamble.as_bytes()).unwrap_or(&part));
    }
    let commands = commands().render();
    out.extend_from_slice(
        commands
            .strip_prefix(preamble.as_str())
            .unwrap_or(&commands)
            .as_bytes(),
    );
    out.extend_from_slice(CONFIGURATION.as_bytes());
    out.extend_from_slice(REFERENCE.as_bytes());
    Ok(out)
}

/// The COMMANDS section: each command with its arguments and options, from the clap definitions.
fn commands() -> Roff {
    let cli = Cli::command();
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    roff.text([roman(
        "Without a command, dynwall runs the daemon (as dynwall run). Every command takes ",
    )]);
    roff.text([
        bold("-c"),
        roman(" and "),
        bold("--log-format"),
        roman("; their other options follow each one."),
    ]);
    for sub in cli.get_subcommands() {
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .collect();
        let mut head: Vec<Inline> = vec![bold(format!("dynwall {}", sub.get_name()))];
        for a in &args {
            head.push(roman(" "));
            if a.is_required_set() {
                head.extend(usage(a));
            } else {
                head.push(roman("["));
                head.extend(usage(a));
                head.push(roman("]"));
            }
        }
        roff.control("TP", []);
        roff.text(head);
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        roff.text([roman(about)]);
        if args.is_empty() {
            continue;
        }
        roff.control("RS", []);
        for a in &args {
            roff.control("TP", []);
            roff.text(usage(a));
            let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let takes_value = a.get_action().takes_values();
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .filter(|_| takes_value)
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if !values.is_empty() {
                help = format!("{}: {}.", help.trim_end_matches('.'), values.join(", "));
            }
            roff.text([roman(help)]);
        }
        roff.control("RE", []);
    }
    roff
}

/// How an argument is written: `--json`, `INSTANCE`.
fn usage(a: &clap::Arg) -> Vec<Inline> {
    if a.is_positional() {
        let name = a
            .get_value_names()
            .and_then(|n| n.first())
            .map_or_else(|| a.get_id().to_string().to_uppercase(), |n| n.to_string());
        return vec![italic(name)];
    }
    let flag = match (a.get_long(), a.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => a.get_id().to_string(),
    };
    vec![bold(flag)]
}

/// Every configuration key, by table. Kept beside the README's "A minimal config" and
/// `config/dynwall.toml`, which show them in use.
const CONFIGURATION: &str = r#".SH CONFIGURATION
A TOML file. Unknown keys are errors; durations are strings with a unit ("250ms", "30s", "5m",
"1h"); ids may be numbers or strings. An invalid file is refused naming the file, the dotted key
and the reason (exit 78). The shipped \fI/etc/dynwall/dynwall.toml\fR explains every key; its
examples (an extra network in \fBkeep\fR, a \fB[[probe]]\fR) are commented out.
.SS [daemon]
.TP
\fBinterval\fR (default "60s")
How often the public address is looked up.
.TP
\fBreconcile\fR (default "15m")
How often every firewall is read again although the address did not change, to repair edits by
hand.
.TP
\fBstate_dir\fR (default \fB$STATE_DIRECTORY\fR, else \fI/var/lib/dynwall\fR)
State file and lock; created with mode 0700.
.SS [resolver]
.TP
\fBquorum\fR (default 2, or the number of sources of a family when it has fewer)
How many sources of one address family must name the same address. Only the families a
firewall tracks need that many sources.
.TP
\fBtimeout\fR (default "5s")
Per source; sources are asked at once, so this also bounds a lookup.
.SS [[resolver.source]]
Without any, four IPv4 and three IPv6 sources of several operators are used (see the README).
Every source has a \fBkind\fR and an optional \fBfamily\fR, "ipv4" (default) or "ipv6", and the
keys of its kind:
.TP
\fBkind = "http"\fR: \fBurl\fR
The body is exactly one address. URLs must be https, except for loopback and local hosts.
.TP
\fBkind = "http\-json"\fR: \fBurl\fR, \fBfield\fR
\fBfield\fR is a top\-level key or a JSON pointer ("/data/ip") to a string holding the address.
.TP
\fBkind = "dns"\fR: \fBserver\fR, \fBname\fR, \fBrecord\fR, \fBclass\fR
Asks \fBserver\fR (an address, port 53 unless given) for \fBname\fR: \fBrecord\fR "A", "AAAA"
or "TXT", \fBclass\fR "IN" (default) or "CH".
.TP
\fBkind = "stun"\fR: \fBserver\fR
A STUN Binding request to \fBserver\fR (host:port).
.TP
\fBkind = "upnp"\fR: \fBurl\fR or \fBssdp\fR
The home router's WAN address (IPv4): its description \fBurl\fR, or found by an SSDP search sent
to \fBssdp\fR (default "239.255.255.250:1900"). A router behind carrier\-grade NAT or another
router cannot know the public address, and says so.
.TP
\fBkind = "interface"\fR: \fBname\fR
The one global address of the family on a local interface.
.TP
\fBkind = "command"\fR: \fBcommand\fR
A program and its arguments (["/usr/local/bin/myip", "\-\-v4"], no shell) that prints exactly one
address.
.SS [indigo]
.TP
\fBendpoint\fR (default "https://api.customer.jp")
Plain http is refused unless the host is loopback.
.TP
\fBtimeout\fR (default "30s")
Per request.
.TP
\fBapi_key\fR, \fBapi_secret\fR, or \fBapi_key_file\fR, \fBapi_secret_file\fR
The credentials, inline or from files (surrounding whitespace trimmed; relative paths are
relative to the config). Else the systemd credentials \fIindigo_api_key\fR and
\fIindigo_api_secret\fR, else the environment (see ENVIRONMENT). Read only by the commands that
call the API: \fBrun\fR, \fB\-\-once\fR and \fBcheck\fR.
.SS [openstack.NAME]
An OpenStack cloud named NAME (several may be configured, beside [indigo] or instead of it).
.TP
\fBcloud\fR
Start from this entry of a clouds.yaml on openstacksdk's search path, secure.yaml merged; the
keys below override it. Without \fBcloud\fR and \fBauth_url\fR: the OS_* variables of an openrc.
.TP
\fBauth_url\fR, \fBauth_type\fR
Keystone (".../v3", ".../v2.0" or unversioned); "password", "v3applicationcredential" or
"v2password" (default: from the keys given).
.TP
\fBapplication_credential_id\fR or \fBapplication_credential_name\fR, \fBapplication_credential_secret\fR or \fBapplication_credential_secret_file\fR
An application credential (recommended); the secret also from the systemd credential
\fIopenstack_NAME_application_credential_secret\fR.
.TP
\fBusername\fR or \fBuser_id\fR, \fBuser_domain_name\fR or \fBuser_domain_id\fR, \fBpassword\fR or \fBpassword_file\fR
A password user; the password also from the systemd credential \fIopenstack_NAME_password\fR.
.TP
\fBproject_name\fR or \fBproject_id\fR, \fBproject_domain_name\fR or \fBproject_domain_id\fR
The project a password token is scoped to.
.TP
\fBtenant_id\fR or \fBtenant_name\fR
v2password (SkyAtlas): the tenant.
.TP
\fBregion_name\fR, \fBinterface\fR (default "public")
Catalog endpoint selection; the region is required when a service is in several regions.
.TP
\fBallow_insecure_http\fR (default false)
Let credentials travel over plain http to a non\-loopback host; each authentication then warns.
.TP
\fBtimeout\fR (default "30s")
Per request.
.SS [[firewall]]
.TP
\fBcloud\fR (needed only with several clouds)
"indigo", or the NAME of an [openstack.NAME] table.
.TP
\fBtemplate\fR (Indigo)
The firewall template id.
.TP
\fBinstances\fR (Indigo)
Every instance the template is assigned to: the API replaces the assignments with this list on
each update, and dynwall refuses to write when an id does not exist.
.TP
\fBsecurity_group\fR (OpenStack)
The security group, by name (unique in the project) or id. dynwall owns its ingress rules with
this protocol and port and a remote IP prefix; new rules are created before stale ones are deleted.
.TP
\fBprotocol\fR (default "TCP"), \fBport\fR (default "22")
dynwall owns the inbound rules of type Custom with this protocol and port, and only those.
.TP
\fBkeep\fR (default [])
Other addresses or networks to keep allowed on that port.
.TP
\fBfamily\fR (default "ipv4")
Which home address to keep: "ipv4", "ipv6" or "both".
.SS [[probe]]
.TP
\fBcloud\fR (needed only with several clouds)
As for [[firewall]].
.TP
\fBinstance\fR
The instance to keep alive (OpenStack: the server's id or unique name, which may hold inner
spaces but no leading or trailing whitespace).
.TP
\fBremediation\fR (default "stop\-start")
OpenStack: "hard\-reboot" sends one reboot HARD instead of os\-stop and os\-start.
.TP
\fBaddress\fR (default: the instance's address from the API, port 22)
What to probe, as address:port.
.TP
\fBcheck\fR (default "ssh")
"ssh" (connect and read a banner starting "SSH\-"), "tcp" (connect), or "http" with \fBurl\fR
(2xx or 3xx, or exactly \fBexpect_status\fR).
.TP
\fBinterval\fR (default "30s"), \fBtimeout\fR (default "5s")
Probe period and per\-probe timeout.
.TP
\fBfailures\fR (default 3)
Consecutive failed probes before acting.
.TP
\fBstop_timeout\fR (default "5m"), \fBstart_timeout\fR (default "5m")
A stop that has not finished by then is followed by a force stop; longest wait for Running.
.TP
\fBgrace\fR (default "5m")
After a start, failures do not count for this long.
.TP
\fBmax_actions\fR (default 3), \fBwindow\fR (default "24h")
Remediations allowed per rolling window; then dynwall gives up on the instance until
\fBdynwall reset\fR.
.TP
\fBenabled\fR (default true)
false: probe and report, never act.
.SS [metrics]
.TP
\fBlisten\fR (off unless set; e.g. "127.0.0.1:9798")
Serve the Prometheus text format at /metrics, and /healthz (200 while the last cycle succeeded
within three intervals, else 503). A non\-loopback address shows this host's public address and
instance ids to whoever reaches it.
.SS [[notify]]
.TP
\fBkind\fR
"webhook" (a JSON POST per event), "ntfy" (a push message per event) or "healthchecks"
(/start, success and /fail pings per cycle).
.TP
\fBurl\fR, or \fBurl_file\fR
Where to send: the webhook, the ntfy topic URL, the check's ping URL. https, except for loopback
and local\-network hosts. Often a secret itself: shown masked in every message. A file is also
read as the systemd credential of its name.
.TP
\fBevents\fR (default: all; webhook, ntfy)
Among "ip_changed", "firewall_updated", "remediation", "gave_up" and "failing" (once when cycles
start failing, once when they recover).
.TP
\fBtoken\fR, or \fBtoken_file\fR (webhook, ntfy)
Sent as Authorization: Bearer.
.TP
\fBpriority\fR (ntfy; default: each event's own), \fBtags\fR (ntfy)
1 to 5, or "min", "low", "default", "high", "max"; tags added to each event's own.
.TP
\fBperiod\fR (healthchecks; default "5m")
A cycle whose outcome is unchanged is pinged when this long has passed since the last ping.
.TP
\fBtimeout\fR (default "10s")
Per request; failures are retried (4 attempts over about 45 seconds), never holding up a cycle.
"#;

/// Files, environment, signals and exit codes.
const REFERENCE: &str = r#".SH FILES
.TP
\fI/etc/dynwall/dynwall.toml\fR
The configuration (\fB\-c\fR, else \fB$DYNWALL_CONFIG\fR, else this path).
.TP
\fI/etc/dynwall/indigo_api_key\fR, \fI/etc/dynwall/indigo_api_secret\fR
The API credentials the shipped configuration names (mode 0600; the systemd units pass them as
credentials).
.TP
\fI/var/lib/dynwall/state.json\fR
The persisted state (last address, last cycle, each template, each probed instance);
\fB$STATE_DIRECTORY\fR under systemd.
.TP
\fI/var/lib/dynwall/dynwall.lock\fR
Held by the daemon for its whole life and by a \fB\-\-once\fR run for its run.
.TP
\fI/usr/libexec/dynwall/dynwall\-extra\fR
The companion program that \fBdemo\fR, \fBman\fR and \fBcompletions\fR run in, so that the
daemon's resident binary carries none of their code (looked for beside \fBdynwall\fR first).
.SH ENVIRONMENT
.TP
\fBDYNWALL_CONFIG\fR
The configuration file when \fB\-c\fR is not given.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd's \fBLoadCredential=\fR; the files \fIindigo_api_key\fR and \fIindigo_api_secret\fR in it hold the API credentials.
.TP
\fBDYNWALL_INDIGO_API_KEY\fR, \fBDYNWALL_INDIGO_API_SECRET\fR
The API credentials, when the configuration names no other source (also \fBIndigoApiKey\fR,
\fBIndigoApiPrivateKey\fR).
.TP
\fBSTATE_DIRECTORY\fR
Set by systemd's \fBStateDirectory=\fR; the default state directory.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd for \fBType=notify\fR services: readiness, status lines and watchdog keep-alives.
.TP
\fBRUST_LOG\fR
Log filter: a level (\fIdebug\fR) or \fItarget=level\fR pairs, comma-separated (default \fIinfo\fR).
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop promptly, leaving valid state; exit 0.
.TP
\fBSIGHUP\fR
Reload the configuration; an invalid one is reported and the previous one stays in force.
.SH EXIT STATUS
.TP
\fB0\fR
In sync, whether or not a write was needed.
.TP
\fB1\fR
Any other failure, including an instance whose remediation budget is spent.
.TP
\fB2\fR
Bad command-line usage.
.TP
\fB69\fR
No usable public address, or the API unreachable after 3 attempts.
.TP
\fB75\fR
Temporary: another dynwall holds the lock, or the API quota did not reset in time.
.TP
\fB77\fR
The provider rejected the credentials.
.TP
\fB78\fR
Invalid configuration.
.SH SEE ALSO
\fI/usr/share/doc/dynwall/README.md\fR: how the address is found, the ways of running dynwall,
and what it touches and never touches.
"#;
