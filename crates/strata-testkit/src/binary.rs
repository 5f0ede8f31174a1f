//! Finding `redis-server` and `redis-cli`, and the skip-or-panic rule when
//! they are missing.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A Redis program the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `redis-server`, overridden by `STRATA_REDIS_SERVER`.
    Server,
    /// `redis-cli`, overridden by `STRATA_REDIS_CLI`.
    Cli,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Self::Server => "redis-server",
            Self::Cli => "redis-cli",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Self::Server => "STRATA_REDIS_SERVER",
            Self::Cli => "STRATA_REDIS_CLI",
        }
    }
}

/// Finds `tool`, or applies the skip rule: panics when `CI` is set,
/// otherwise prints `skipping: <reason>` to stderr and returns `None`.
pub(crate) fn find_or_skip(tool: Tool) -> Option<PathBuf> {
    match locate(tool, |name| std::env::var_os(name)) {
        Ok(path) => Some(path),
        Err(reason) => skip_or_panic(
            &reason,
            is_ci(std::env::var_os("CI")),
            &mut std::io::stderr(),
        ),
    }
}

/// Finds `tool`, panicking with the reason if it is missing, for helpers
/// that cannot return `None` (such as [`crate::RedisServer::redis_cli`]).
pub(crate) fn find_or_panic(tool: Tool) -> PathBuf {
    locate(tool, |name| std::env::var_os(name))
        .unwrap_or_else(|reason| panic!("strata-testkit: {reason}"))
}

/// Whether the value of the `CI` variable means "this is CI": set and not
/// empty (`CI=true`, `CI=1`, ... all count).
fn is_ci(value: Option<OsString>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

/// The skip rule itself, apart from the environment so it can be tested;
/// the reason for a skip is written to `report` (the process's stderr).
fn skip_or_panic<T>(reason: &str, ci: bool, report: &mut dyn Write) -> Option<T> {
    if ci {
        panic!(
            "strata-testkit: {reason}, and CI is set, so the Redis tests must run rather than \
             be skipped: install redis-server and redis-cli, or point STRATA_REDIS_SERVER / \
             STRATA_REDIS_CLI at them"
        );
    }
    // Straight to the process's stderr rather than `eprintln!`, which the
    // test harness captures and shows only for failing tests: a skipped
    // test passes, and the reason must still be seen.
    let _ = writeln!(report, "skipping: {reason}");
    None
}

/// Resolves `tool` from its override variable or from `PATH`; `env` reads
/// an environment variable. The error is a one-line reason.
fn locate(tool: Tool, env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let var = tool.env_var();
    let path_var = env("PATH").unwrap_or_default();
    match env(var).filter(|value| !value.is_empty()) {
        Some(value) => {
            let candidate = PathBuf::from(&value);
            let found = if candidate.components().count() > 1 {
                is_executable(&candidate).then_some(candidate)
            } else {
                search_path(&path_var, &candidate)
            };
            found.ok_or_else(|| {
                format!(
                    "{var}={} is not an executable file (nor a program on PATH)",
                    value.to_string_lossy()
                )
            })
        }
        None => search_path(&path_var, Path::new(tool.program())).ok_or_else(|| {
            format!(
                "{} not found on PATH (set {var} to its path)",
                tool.program()
            )
        }),
    }
}

/// The first executable `name` in the directories of a `PATH` value.
fn search_path(path_var: &OsString, name: &Path) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| {
            let plain = dir.join(name);
            let exe = plain.with_extension(std::env::consts::EXE_EXTENSION);
            [plain, exe]
        })
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment holding only the given variables.
    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
            .collect();
        move |name| {
            vars.iter()
                .find(|(var, _)| var == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn ci_means_set_and_not_empty() {
        assert!(!is_ci(None));
        assert!(!is_ci(Some(OsString::new())));
        assert!(is_ci(Some(OsString::from("true"))));
        assert!(is_ci(Some(OsString::from("0"))));
    }

    #[test]
    fn outside_ci_a_missing_binary_skips_and_says_why() {
        // Written to a buffer, not stderr: a green run with Redis present
        // must not print that it was not found.
        let mut report = Vec::new();
        assert_eq!(
            skip_or_panic::<()>("redis-server not found on PATH", false, &mut report),
            None
        );
        assert_eq!(report, b"skipping: redis-server not found on PATH\n");
    }

    #[test]
    #[should_panic(expected = "CI is set, so the Redis tests must run")]
    fn in_ci_a_missing_binary_panics() {
        skip_or_panic::<()>("redis-server not found on PATH", true, &mut Vec::new());
    }

    #[test]
    fn missing_from_path_names_the_program_and_the_override() {
        let reason = locate(Tool::Server, env(&[("PATH", "/nonexistent-strata")])).unwrap_err();
        assert_eq!(
            reason,
            "redis-server not found on PATH (set STRATA_REDIS_SERVER to its path)"
        );
        let reason = locate(Tool::Cli, env(&[])).unwrap_err();
        assert!(
            reason.starts_with("redis-cli not found on PATH"),
            "{reason}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_override_wins_and_is_checked() {
        // `sh` stands in for an executable found through the override.
        let sh = search_path(&OsString::from("/bin:/usr/bin"), Path::new("sh")).unwrap();
        let sh_str = sh.to_str().unwrap();
        let found = locate(
            Tool::Server,
            env(&[
                ("PATH", "/nonexistent-strata"),
                ("STRATA_REDIS_SERVER", sh_str),
            ]),
        );
        assert_eq!(found, Ok(sh.clone()));

        let by_name = locate(
            Tool::Cli,
            env(&[("PATH", "/bin:/usr/bin"), ("STRATA_REDIS_CLI", "sh")]),
        );
        assert!(by_name.is_ok(), "{by_name:?}");

        let reason = locate(
            Tool::Server,
            env(&[("STRATA_REDIS_SERVER", "/nonexistent-strata/redis-server")]),
        )
        .unwrap_err();
        assert!(reason.starts_with("STRATA_REDIS_SERVER=/nonexistent-strata/redis-server"));

        // An empty override is ignored, as if unset.
        let empty = locate(
            Tool::Server,
            env(&[("PATH", "/nonexistent-strata"), ("STRATA_REDIS_SERVER", "")]),
        );
        assert!(empty.unwrap_err().contains("not found on PATH"));
    }
}
