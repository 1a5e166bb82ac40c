//! An operator's command run on the host, bounded in time: the pre-apply gate
//! ([`crate::gate`]) and the post-update check (`x-composeops.verify`, [`crate::verify`]) both
//! run one, and both say no the same way: a non-zero exit, a timeout or a command that cannot
//! start, with the last lines of what it printed.
//!
//! The command runs in its own process group, so that a timeout kills what it started too
//! (a shell's background children, a `curl` in a retry loop); its stdout and stderr share one
//! pipe, so their lines stay in the order they were written.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Lines of output kept for a message: enough for a scanner's summary or a failed request.
pub(crate) const KEPT_LINES: usize = 20;

/// Bytes of output kept while reading, so a chatty command cannot grow the agent's memory.
const KEPT_BYTES: usize = 64 * 1024;

/// How long the output may stay open after the command ended (a background child of the
/// shell holding it) before reading stops.
const DRAIN: Duration = Duration::from_secs(2);

/// A command to run: `argv[0]` is looked up in `PATH`; `env` comes on top of this process's
/// own environment.
#[derive(Debug)]
pub(crate) struct HostCommand<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    /// The working directory; this process's own when `None`.
    pub dir: Option<&'a Path>,
    /// Written to its stdin (which it need not read); `None`: stdin is /dev/null.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Why the command did not say yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A non-zero exit, or a signal: `exit 3`, `killed by signal 9`.
    Exit(String),
    Timeout(Duration),
    /// It could not be started: the program and the error.
    CannotStart {
        program: String,
        error: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exit(s) => f.write_str(s),
            Failure::Timeout(d) => write!(f, "no answer within {}", humantime(*d)),
            Failure::CannotStart { program, error } => write!(f, "cannot run {program}: {error}"),
        }
    }
}

/// How a command ended: `failure` is `None` when it exited 0; `output` is its last
/// [`KEPT_LINES`] non-empty lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    pub failure: Option<Failure>,
    pub output: Vec<String>,
}

/// `<what>: <why>: <last lines>`, or `<what>: <why> (no output)`.
pub(crate) fn message(what: &str, failure: &Failure, output: &[String]) -> String {
    if output.is_empty() {
        format!("{what}: {failure} (no output)")
    } else {
        format!("{what}: {failure}: {}", output.join("\n"))
    }
}

pub(crate) fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Runs `cmd` to its end or its timeout; whatever it left running in its process group is
/// killed either way.
pub(crate) async fn run(cmd: HostCommand<'_>) -> Finished {
    let program = cmd.argv.first().cloned().unwrap_or_default();
    match spawn_and_wait(cmd).await {
        Ok(done) => done,
        Err(e) => Finished {
            failure: Some(Failure::CannotStart {
                program,
                error: e.to_string(),
            }),
            output: vec![],
        },
    }
}

async fn spawn_and_wait(cmd: HostCommand<'_>) -> std::io::Result<Finished> {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let (reader, writer) = std::io::pipe()?;
    let mut c = tokio::process::Command::new(program);
    c.args(args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(writer.try_clone()?)
        .stderr(writer)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cmd.dir {
        c.current_dir(dir);
    }
    let mut child = c.spawn()?;
    // The command holds the pipe's write end: dropped, the pipe ends when the command's
    // processes do.
    drop(c);
    let pid = child.id();
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), cmd.stdin) {
        // A command that does not read its input is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let reading = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * KEPT_BYTES {
                kept.drain(..kept.len() - KEPT_BYTES);
            }
        }
        kept
    });
    let failure = match tokio::time::timeout(cmd.timeout, child.wait()).await {
        Ok(status) => {
            let status = status?;
            (!status.success()).then(|| Failure::Exit(describe(status)))
        }
        Err(_) => Some(Failure::Timeout(cmd.timeout)),
    };
    // Whatever it left running (all of it, after a timeout) does not outlive it.
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on the command's own process group; it touches no memory.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.wait().await;
    let output = match tokio::time::timeout(DRAIN, reading).await {
        Ok(Ok(bytes)) => last_lines(&bytes, KEPT_LINES),
        _ => vec![],
    };
    Ok(Finished { failure, output })
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    }
}

/// The last `n` non-empty lines of `bytes`, lossily decoded.
fn last_lines(bytes: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn run_blocking(argv: &[String], input: Option<&str>, secs: u64) -> Finished {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let env = vec![("HOSTCMD_T".to_string(), "v".to_string())];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here"), "").unwrap();
        rt.block_on(run(HostCommand {
            argv,
            env: &env,
            dir: Some(dir.path()),
            stdin: input.map(|s| s.as_bytes().to_vec()),
            timeout: Duration::from_secs(secs),
        }))
    }

    #[test]
    fn the_command_reads_stdin_and_its_output_is_kept_in_order() {
        let script = "echo out; echo err >&2; cat; echo \"$HOSTCMD_T\"; ls; exit 3";
        let done = run_blocking(&sh(script), Some("plan\n"), 30);
        assert_eq!(done.failure, Some(Failure::Exit("exit 3".into())));
        assert_eq!(done.output, ["out", "err", "plan", "v", "here"]);
        assert_eq!(run_blocking(&sh("true"), None, 30).failure, None);
        // Without input, stdin is at its end at once.
        assert_eq!(run_blocking(&sh("cat"), None, 30).failure, None);
    }

    #[test]
    fn an_argv_runs_without_a_shell() {
        let argv: Vec<String> = ["echo", "$HOSTCMD_T", "a b"].map(String::from).into();
        let done = run_blocking(&argv, None, 30);
        assert_eq!(
            (done.failure, done.output),
            (None, vec!["$HOSTCMD_T a b".into()])
        );
        let missing = vec!["/nonexistent/composeops-check".to_string()];
        let done = run_blocking(&missing, None, 30);
        match done.failure {
            Some(Failure::CannotStart { program, .. }) => assert_eq!(program, missing[0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let started = std::time::Instant::now();
        let done = run_blocking(&sh("echo scanning; sleep 30 & wait"), None, 1);
        assert_eq!(done.failure, Some(Failure::Timeout(Duration::from_secs(1))));
        assert_eq!(done.output, ["scanning"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn messages_say_why_with_the_last_lines() {
        let out = vec!["CVE-1 critical".to_string(), "2 findings".to_string()];
        assert_eq!(
            message(
                "gate refused the plan",
                &Failure::Exit("exit 3".into()),
                &out
            ),
            "gate refused the plan: exit 3: CVE-1 critical\n2 findings"
        );
        assert_eq!(
            message(
                "verify failed",
                &Failure::Timeout(Duration::from_secs(1)),
                &[]
            ),
            "verify failed: no answer within 1s (no output)"
        );
        let many: String = (1..=30).map(|i| format!("l{i}\n\n")).collect();
        let kept = last_lines(many.as_bytes(), KEPT_LINES);
        assert_eq!((kept.len(), kept[0].as_str()), (20, "l11"));
    }
}
