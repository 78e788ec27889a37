//! Child processes and the files they leave: where the built binaries are, fresh ports and
//! scratch directories, starting a server and waiting for its "listening on" line, killing
//! everything on drop, and polling for something to happen. Nothing here knows Envoy or the
//! gate.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

const LISTENING_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace's root: the package's own directory for the root crate's tests, its parent
/// for `cli/tests`, which compile this harness too (the one with `Cargo.lock`).
pub fn workspace_root() -> &'static Path {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    package.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(package)
}

/// Cargo's target directory, where the test command built the binaries the harness runs.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// A built file under the target directory, or a panic saying how to build it (`hint`).
pub fn built(relative: &str, hint: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(path.is_file(), "{} is missing; build it first:\n    {hint}", path.display());
    path
}

/// A loopback port nobody listens on right now (it may be taken again before it is used;
/// the Envoy stack retries when Envoy cannot bind).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("address of an ephemeral port").port()
}

/// `N` random bytes from the kernel: session keys and seal nonces a test must not repeat.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    bytes
}

/// 32 random bytes, base64: a session key.
pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
}

/// The wall clock in Unix seconds, as the gate reads it.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

/// A fresh scratch directory under the target directory, for one stack's files.
pub fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = target_dir().join("tmp").join(format!("e2e-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The last `lines` lines of `text`, for panic messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Child processes, killed (newest first) when dropped, also when a start panics midway.
#[derive(Default)]
pub struct Children(Vec<(&'static str, Child)>);

impl Children {
    /// Keeps `child`, started as `name`, to be killed with the others.
    pub fn push(&mut self, name: &'static str, child: Child) {
        self.0.push((name, child));
    }

    /// Kills the child started as `name`.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == name) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills them all, newest first.
    pub fn kill_all(&mut self) {
        while let Some((_, mut child)) = self.0.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The child started as `name`, while it is kept.
    pub fn get(&mut self, name: &str) -> Option<&mut Child> {
        self.0.iter_mut().find(|(n, _)| *n == name).map(|(_, c)| c)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Starts `cmd` and waits for the line `<name> listening on <url>` on its stdout; returns the
/// URL. Its stderr goes to `<dir>/<name>.stderr`.
pub fn spawn_listening(name: &'static str, mut cmd: Command, dir: &Path, children: &mut Children) -> String {
    let stderr_path = dir.join(format!("{name}.stderr"));
    let stderr = File::create(&stderr_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
    let stdout = child.stdout.take();
    children.push(name, child);
    let Some(stdout) = stdout else { panic!("{name}: no stdout pipe") };
    let (tx, rx) = mpsc::channel();
    let marker = format!("{name} listening on ");
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if let Some(url) = line.trim().strip_prefix(&marker) {
                        let _ = tx.send(Some(url.to_string()));
                        break;
                    }
                }
            }
        }
        // Keep the pipe drained so the process never blocks on a full stdout.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let stderr_tail = || tail(&fs::read_to_string(&stderr_path).unwrap_or_default(), 20);
    match rx.recv_timeout(LISTENING_TIMEOUT) {
        Ok(Some(url)) => url,
        Ok(None) => panic!("{name} exited before it was listening; its stderr:\n{}", stderr_tail()),
        Err(_) => {
            panic!("{name} printed no listening line within {LISTENING_TIMEOUT:?}; its stderr:\n{}", stderr_tail())
        }
    }
}

/// Which server of the legacy app a stack puts behind the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum App {
    /// The portal (tiny_http): the JSON echo, the old login, the test aids of its query.
    #[default]
    Portal,
    /// `--raw-echo`: only the JSON echo, from the app's own HTTP/1.1 reader, with the
    /// request's trailers (which tiny_http drops).
    RawEcho,
}

/// Starts the built legacy app (`bin`) as `app` on a port the kernel picks; returns its URL.
pub fn spawn_app(bin: &Path, app: App, dir: &Path, children: &mut Children) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", "127.0.0.1:0"]);
    if app == App::RawEcho {
        cmd.arg("--raw-echo");
    }
    spawn_listening("legacy-app", cmd, dir, children)
}

/// Ends a stack: kills its processes, then removes its scratch `dir`, or, when the test
/// failed, keeps it and prints where it is and the tail of the `log` the `host` wrote.
pub fn tear_down(children: &mut Children, dir: &Path, stack: &str, host: &str, log: &Path) {
    children.kill_all();
    if thread::panicking() {
        eprintln!("{stack} files kept in {}", dir.display());
        eprintln!("{host} log tail:\n{}", tail(&fs::read_to_string(log).unwrap_or_default(), 30));
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Polls `done` every 50 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
