//! An in-process simulator on port 0, and a client pointed at it.

use std::sync::Arc;

use lifeboat::ovh::{config::Auth, Client, ClientOptions, Config};
use lifeboat::secret::Secret;
use lifeboat::sim::{world::Fixture, Options, Sim};

pub struct TestSim {
    pub sim: Arc<Sim>,
    pub base: String,
}

impl TestSim {
    /// Starts the simulator on `fixture` (the demo account if `None`) at `speed`.
    pub async fn start(fixture: Option<Fixture>, speed: f64) -> TestSim {
        let fixture = fixture.unwrap_or_else(Sim::demo_fixture);
        let sim = Sim::new(
            fixture,
            Options {
                speed,
                admin_token: "admin".into(),
                ..Options::default()
            },
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/1.0", listener.local_addr().unwrap());
        tokio::spawn(lifeboat::sim::serve(
            listener,
            sim.clone(),
            std::future::pending(),
        ));
        TestSim { sim, base }
    }

    pub fn config(&self, secret: &str) -> Config {
        Config {
            endpoint: self.base.clone(),
            base_url: self.base.clone(),
            auth: Auth::Signed {
                application_key: "demo-application-key".into(),
                application_secret: Secret::new(secret),
                consumer_key: Some(Secret::new("demo-consumer-key")),
            },
        }
    }

    pub fn client(&self) -> Client {
        self.client_with(ClientOptions {
            backoff: std::time::Duration::from_millis(10),
            ..ClientOptions::default()
        })
    }

    pub fn client_with(&self, opts: ClientOptions) -> Client {
        Client::new(self.config("demo-application-secret"), opts).unwrap()
    }

    /// (method, path, status) of every request so far.
    pub fn calls(&self) -> Vec<(String, String, u64)> {
        self.sim
            .requests()
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_string(),
                    r["path"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}
