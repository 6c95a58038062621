//! The generated shell completions and man page, through the real binary.

use std::process::Command;

fn dynwall(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dynwall"))
        .args(args)
        .env_remove("DYNWALL_CONFIG")
        .output()
        .expect("dynwall runs")
}

#[test]
fn completions_cover_every_shell_and_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = dynwall(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["run", "check", "ip", "status", "healthcheck", "demo", "man"] {
            assert!(text.contains(sub), "{shell}: no {sub} in\n{text}");
        }
        assert!(text.contains("config"), "{shell}: options complete too");
    }
    let out = dynwall(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_prints_a_roff_page_for_section_1() {
    let out = dynwall(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".TH") || text.starts_with(".ie"),
        "roff: {}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains(".TH dynwall 1"), "{text}");
    for s in ["healthcheck", "completions", ".SH EXIT STATUS", "SIGHUP"] {
        assert!(text.contains(s), "{s} missing from\n{text}");
    }
}

#[test]
fn help_documents_both_commands() {
    let out = dynwall(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("completions") && text.contains("man"),
        "{text}"
    );
}

#[test]
fn once_and_dry_run_are_offered_only_where_they_work() {
    for sub in ["check", "ip", "status", "healthcheck", "demo"] {
        let out = dynwall(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("--once") && !text.contains("--dry-run"),
            "{sub} --help offers the daemon's flags:\n{text}"
        );
        let out = dynwall(&[sub, "--once"]);
        assert_eq!(out.status.code(), Some(2), "{sub} --once is a usage error");
    }
    for args in [&["--help"][..], &["run", "--help"]] {
        let out = dynwall(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--once") && text.contains("--dry-run"),
            "{args:?}:\n{text}"
        );
    }
}

#[test]
fn the_man_page_points_to_no_missing_page() {
    let out = dynwall(&["man"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // clap_mangen's default SUBCOMMANDS section names dynwall-ip(1) and the like, which no
    // package ships; the commands are sections of this one page instead.
    assert!(
        !text.contains("dynwall\\-ip") && !text.contains("(1)"),
        "{text}"
    );
    for s in [".SH COMMANDS", ".SH CONFIGURATION", "\\fBdynwall ip\\fR"] {
        assert!(text.contains(s), "{s} missing");
    }
}

/// `man`, `completions` and `demo` run in the companion: found in `../libexec/dynwall/` as the
/// packages install it; missing, the error names it and where it was looked for.
#[test]
fn the_companion_is_found_in_libexec_and_named_when_missing() {
    let root = tempfile::tempdir().expect("tempdir");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::copy(env!("CARGO_BIN_EXE_dynwall"), bin.join("dynwall")).expect("copy dynwall");

    let missing = Command::new(bin.join("dynwall"))
        .args(["man"])
        .output()
        .expect("dynwall runs");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("dynwall-extra") && err.contains("libexec/dynwall"),
        "{err}"
    );

    let libexec = root.path().join("libexec/dynwall");
    std::fs::create_dir_all(&libexec).expect("libexec");
    std::fs::copy(
        env!("CARGO_BIN_EXE_dynwall-extra"),
        libexec.join("dynwall-extra"),
    )
    .expect("copy dynwall-extra");
    let found = Command::new(bin.join("dynwall"))
        .args(["completions", "bash"])
        .output()
        .expect("dynwall runs");
    assert!(found.status.success(), "{found:?}");
    assert!(String::from_utf8_lossy(&found.stdout).contains("_dynwall()"));

    // The daemon's own commands are not the companion's.
    let own = Command::new(env!("CARGO_BIN_EXE_dynwall-extra"))
        .args(["status"])
        .output()
        .expect("dynwall-extra runs");
    assert_eq!(own.status.code(), Some(2), "{own:?}");
}
