//! Real mail servers for the tests: Dovecot (IMAP) and aiosmtpd (SMTP) delivering into the
//! Maildir Dovecot serves, each test with its own pair on free loopback ports. `.ci/run`
//! installs them (Debian's dovecot-imapd, PyPI's aiosmtpd).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "alicepw";
pub const ADDRESS: &str = "alice@example.test";

/// A port nobody listens on, for a server the tests start. Taken below Linux's ephemeral range
/// (32768 and up), where the kernel hands out the ports of `bind(":0")` (a `lifeboat serve`,
/// a simulator): a port picked here cannot be taken by one of those before the server binds
/// it; and one after another in this process, so two tests never pick the same one.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % 12000;
    loop {
        let port = 20000 + ((start + NEXT.fetch_add(1, Ordering::SeqCst)) % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port} (if it is not installed: {})",
            super::missing(what)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct MailServer {
    pub dir: tempfile::TempDir,
    /// IMAP: plain, or STARTTLS required when the server has TLS.
    pub imap_port: u16,
    /// SMTP, plain and open: how tests put mail in the mailbox.
    pub smtp_port: u16,
    /// The servers configured as production ones are, when started with a certificate.
    pub tls: Option<TlsPorts>,
    smtpd: Child,
    tls_smtpd: Option<Child>,
}

/// Where the TLS-only servers listen, and the CA that issued their certificate.
pub struct TlsPorts {
    /// Dovecot, implicit TLS (as on 993).
    pub imaps: u16,
    /// aiosmtpd requiring STARTTLS then AUTH (as on 587).
    pub submission: u16,
    /// aiosmtpd with implicit TLS, requiring AUTH (as on 465).
    pub smtps: u16,
    pub ca_file: PathBuf,
}

/// How the test's mail servers are set up.
#[derive(Default)]
pub struct MailOptions {
    /// Serve TLS with this certificate (and require it, but on the plain SMTP test port).
    pub cert: Option<super::tls::Issued>,
    /// Dovecot does not advertise IDLE: clients must poll.
    pub no_idle: bool,
}

/// aiosmtpd as a submission server: STARTTLS required then AUTH on one port, implicit TLS and
/// AUTH on another, both delivering into the Maildir.
const TLS_SMTPD: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
maildir, cert, key, submission, smtps, user, password = sys.argv[1:]
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
    return AuthResult(success=ok, handled=False)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
a = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(submission), tls_context=ctx,
               require_starttls=True, authenticator=check, auth_required=True)
# TLS from the first byte: aiosmtpd does not count that as TLS for AUTH, so say it is fine.
b = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(smtps), ssl_context=ctx,
               authenticator=check, auth_required=True, auth_require_tls=False)
a.start(); b.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

impl MailServer {
    pub fn start() -> MailServer {
        MailServer::start_with(MailOptions::default())
    }

    pub fn start_with(opts: MailOptions) -> MailServer {
        // Dovecot refuses to deliver as root: mail belongs to a system user.
        if !Command::new("id")
            .arg("vmail")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            let ok = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "vmail",
                ])
                .status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "could not create the vmail user (tests run as root in CI)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("lbmail")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let maildir = d.join("mail").join(USER).join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for sub in ["run", "state"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        Command::new("chown")
            .args(["-R", "vmail:vmail"])
            .arg(d.join("mail"))
            .status()
            .unwrap();
        std::fs::write(
            d.join("users"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .unwrap();
        let imap_port = free_port();
        let imaps_port = free_port();
        let lmtp_port = free_port();
        let root = d.display();
        let ssl = match &opts.cert {
            None => "ssl = no\ndisable_plaintext_auth = no\n".to_string(),
            Some(c) => format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\ndisable_plaintext_auth = yes\n",
                c.cert.display(),
                c.key.display()
            ),
        };
        let imaps = if opts.cert.is_some() { imaps_port } else { 0 };
        // Dovecot's own list, less IDLE.
        let capability = if opts.no_idle {
            "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ UIDPLUS NAMESPACE CHILDREN UNSELECT MOVE\n"
        } else {
            ""
        };
        std::fs::write(
            d.join("dovecot.conf"),
            format!(
                "protocols = imap lmtp\nlisten = 127.0.0.1\nbase_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n\
{ssl}{capability}shutdown_clients = yes\nauth_mechanisms = plain login\nauth_username_format = %Ln\nmail_location = maildir:~/Maildir\n\
first_valid_uid = 100\npassdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/users\n}}\n\
userdb {{\n  driver = passwd-file\n  args = username_format=%u {root}/users\n  default_fields = uid=vmail gid=vmail home={root}/mail/%u\n}}\n\
service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp_port}\n  }}\n}}\n\
protocol lmtp {{\n  postmaster_address = postmaster@example.test\n}}\n"
            ),
        )
        .unwrap();
        let smtp_port = free_port();
        let smtpd = super::python()
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{smtp_port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", super::missing("aiosmtpd")));
        let (tls, tls_smtpd) = match &opts.cert {
            None => (None, None),
            Some(c) => {
                let (submission, smtps) = (free_port(), free_port());
                let mut child = super::python()
                    .args(["-c", TLS_SMTPD])
                    .arg(&maildir)
                    .args([&c.cert, &c.key])
                    .args([submission.to_string(), smtps.to_string()])
                    .args([USER, PASSWORD])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{}: {e}", super::missing("aiosmtpd")));
                let mut ready = String::new();
                use std::io::BufRead as _;
                std::io::BufReader::new(child.stdout.take().unwrap())
                    .read_line(&mut ready)
                    .unwrap();
                assert_eq!(ready, "ready\n", "{}", super::missing("aiosmtpd"));
                let ports = TlsPorts {
                    imaps: imaps_port,
                    submission,
                    smtps,
                    ca_file: c.ca_file.clone(),
                };
                (Some(ports), Some(child))
            }
        };
        let server = MailServer {
            dir,
            imap_port,
            smtp_port,
            tls,
            smtpd,
            tls_smtpd,
        };
        server.start_imap();
        wait_listening(smtp_port, "aiosmtpd");
        server
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    pub fn start_imap(&self) {
        let status = Command::new("dovecot")
            .arg("-c")
            .arg(self.conf())
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", super::missing("dovecot")));
        assert!(
            status.success(),
            "dovecot did not start: {}",
            std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
        );
        wait_listening(self.imap_port, "dovecot");
    }

    /// Stops Dovecot and kills its sessions (on its own, Dovecot lets a running session linger
    /// for ten seconds, and a client would not notice a short restart).
    pub fn stop_imap(&self) {
        let who = Command::new("doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(["who", "-1"])
            .output()
            .unwrap();
        let sessions: Vec<String> = String::from_utf8_lossy(&who.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect();
        let _ = Command::new("dovecot")
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .status();
        for pid in sessions {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let pid = self.dir.path().join("run/master.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid.exists() || TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() {
            assert!(Instant::now() < deadline, "dovecot did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Dovecot refuses to start again straight away ("already running").
        std::thread::sleep(Duration::from_millis(1000));
    }

    /// Settings for lifeboat: SMTP to aiosmtpd, IMAP to Dovecot, both plain on loopback.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LIFEBOAT_SMTP_HOST", "127.0.0.1".to_string()),
            ("LIFEBOAT_SMTP_PORT", self.smtp_port.to_string()),
            ("LIFEBOAT_SMTP_TLS", "none".to_string()),
            ("LIFEBOAT_SMTP_FROM", "lifeboat@example.test".to_string()),
            ("LIFEBOAT_IMAP_HOST", "127.0.0.1".to_string()),
            ("LIFEBOAT_IMAP_PORT", self.imap_port.to_string()),
            ("LIFEBOAT_IMAP_TLS", "none".to_string()),
            ("LIFEBOAT_IMAP_USER", USER.to_string()),
            ("LIFEBOAT_IMAP_PASSWORD", PASSWORD.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Sends a message to alice through the SMTP server.
    pub fn send(&self, from: &str, subject: &str, body: &str) {
        let script = "import smtplib, sys\nfrom email.message import EmailMessage\nm = EmailMessage()\nm['From'], m['To'], m['Subject'] = sys.argv[2], sys.argv[3], sys.argv[4]\nm.set_content(sys.argv[5])\nsmtplib.SMTP('127.0.0.1', int(sys.argv[1])).send_message(m)\n";
        let ok = super::python()
            .args([
                "-c",
                script,
                &self.smtp_port.to_string(),
                from,
                ADDRESS,
                subject,
                body,
            ])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The raw messages delivered to alice so far.
    pub fn delivered(&self) -> Vec<String> {
        let maildir = self.dir.path().join("mail").join(USER).join("Maildir");
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(maildir.join(sub)).unwrap().flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    pub fn maildir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new("dovecot")
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .status();
        let _ = self.smtpd.kill();
        let _ = self.smtpd.wait();
        if let Some(child) = &mut self.tls_smtpd {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
