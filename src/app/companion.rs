//! The companion program `dynwall-extra`: the commands a person or a packager runs by hand —
//! `demo` (with its simulators), `man` and `completions` — live there, so that the daemon's
//! binary, which stays resident for years, carries none of their code. `dynwall demo|man|
//! completions` replaces itself with the companion, so the command line is the same either way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::exit::{AppError, Code};

/// The companion's file name.
pub const NAME: &str = "dynwall-extra";

/// Where the companion of the binary at `exe` may be, in the order they are tried: beside it
/// (`cargo install`, a build tree, a tarball), then in `libexec/dynwall/` beside its `bin/` (the
/// packages: `/usr/bin/dynwall` → `/usr/libexec/dynwall/dynwall-extra`).
pub fn candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = vec![dir.join(NAME)];
    if let Some(prefix) = dir.parent() {
        out.push(prefix.join("libexec").join("dynwall").join(NAME));
    }
    out
}

/// Replaces this process with the companion, passing it the command line unchanged (its
/// `argv[0]` stays `dynwall`, so its messages read as this program's). Returns only on failure.
pub fn exec(args: impl IntoIterator<Item = OsString>) -> Result<Code, AppError> {
    use std::os::unix::process::CommandExt;

    let exe = std::env::current_exe()
        .map_err(|e| AppError::Setup(format!("cannot find this program's own path: {e}")))?;
    let tried = candidates(&exe);
    let Some(found) = tried.iter().find(|p| p.is_file()) else {
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        return Err(AppError::Setup(format!(
            "`demo`, `man` and `completions` are in the companion program {NAME}, which is not \
             installed (looked for {})",
            list.join(" and ")
        )));
    };
    let err = std::process::Command::new(found)
        .arg0("dynwall")
        .args(args.into_iter().skip(1))
        .exec();
    Err(AppError::Setup(format!(
        "cannot run {}: {err}",
        found.display()
    )))
}

/// The companion's own dispatch: the commands it carries; any other is the daemon binary's.
pub async fn run(cli: Cli) -> Code {
    let result = match &cli.command {
        Some(Command::Demo { cloud }) => demo(*cloud).await,
        Some(Command::Completions { shell }) => super::print(&crate::cli::completions(*shell)),
        Some(Command::Man) => crate::cli::man_page()
            .map_err(|e| AppError::Setup(format!("cannot render the man page: {e}")))
            .and_then(|page| super::print(&page)),
        _ => {
            eprintln!(
                "dynwall: {NAME} runs `demo`, `man` and `completions`; the rest is `dynwall`"
            );
            return Code::Usage;
        }
    };
    super::exit_code(result)
}

#[cfg(feature = "demo")]
async fn demo(cloud: crate::cli::DemoCloud) -> Result<Code, AppError> {
    crate::demo::run(cloud).await
}

#[cfg(not(feature = "demo"))]
async fn demo(_: crate::cli::DemoCloud) -> Result<Code, AppError> {
    eprintln!("dynwall: this build has no demo (it was built without the `demo` feature)");
    Ok(Code::Usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_companion_is_looked_for_beside_the_binary_then_in_libexec() {
        assert_eq!(
            candidates(Path::new("/usr/bin/dynwall")),
            vec![
                PathBuf::from("/usr/bin/dynwall-extra"),
                PathBuf::from("/usr/libexec/dynwall/dynwall-extra"),
            ]
        );
        assert_eq!(
            candidates(Path::new("/home/me/.cargo/bin/dynwall"))[0],
            PathBuf::from("/home/me/.cargo/bin/dynwall-extra")
        );
        // A bare name (never what current_exe returns) has no prefix to look in.
        assert_eq!(
            candidates(Path::new("dynwall")),
            vec![PathBuf::from("dynwall-extra")]
        );
    }
}
