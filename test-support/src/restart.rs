//! Restarting a [`Platform`] with other settings, on the same data.

use crate::harness::{Platform, spawn_component};

impl Platform {
    /// Stops the server (as a crash would) and starts it again on the same data with `env` as its
    /// extra variables instead of those it had: a change of configuration between two runs.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let data = self.data_dir();
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("UTF-8 path"),
        ];
        let log = self.data.path().join("server.log");
        let (child, addr) = spawn_component(&args, &log, &self.env, "cloudrunr listening on http://");
        self.child = child;
        self.port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        self.sites_port = self.port;
        self.base = format!("http://{addr}");
    }
}
