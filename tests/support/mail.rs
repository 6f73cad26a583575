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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    pub imap_port: u16,
    pub smtp_port: u16,
    smtpd: Child,
}

impl MailServer {
    pub fn start() -> MailServer {
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
        let lmtp_port = free_port();
        let root = d.display();
        std::fs::write(
            d.join("dovecot.conf"),
            format!(
                "protocols = imap lmtp\nlisten = 127.0.0.1\nbase_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n\
ssl = no\nshutdown_clients = yes\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\nauth_username_format = %Ln\nmail_location = maildir:~/Maildir\n\
first_valid_uid = 100\npassdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/users\n}}\n\
userdb {{\n  driver = passwd-file\n  args = username_format=%u {root}/users\n  default_fields = uid=vmail gid=vmail home={root}/mail/%u\n}}\n\
service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
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
        let server = MailServer {
            dir,
            imap_port,
            smtp_port,
            smtpd,
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
    }
}
