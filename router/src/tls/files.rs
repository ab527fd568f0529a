//! Certificates from PEM files, reloaded when the files change on disk.
//!
//! The files are polled (size, modification time and inode of both): a renewal tool that writes
//! them in place or swaps them in by rename is seen within one interval, with no restart and no
//! connection dropped. A new pair that does not load (half written, a key that does not fit)
//! leaves the certificate served before in place and says why, once per change.

use super::{CertStore, TlsError, certified_key_from_pem, dns_names};
use platform::settings::CertificateFiles;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls::sign::CertifiedKey;

/// The certificates of a list of file pairs, installed in a [`CertStore`]: each for the names
/// in it, the first also as the default certificate.
pub struct CertFiles {
    store: Arc<CertStore>,
    pairs: Vec<Pair>,
}

struct Pair {
    files: CertificateFiles,
    /// What the files looked like when last read.
    stamp: Option<(Stamp, Stamp)>,
    /// What is installed from them, and under which names.
    installed: Option<(Arc<CertifiedKey>, Vec<String>)>,
}

/// When a file was last changed, as far as polling can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

impl CertFiles {
    /// Reads every pair and installs it; at start, a pair that does not load is an error.
    pub fn load(store: Arc<CertStore>, files: &[CertificateFiles]) -> Result<Self, TlsError> {
        let mut this = Self {
            store,
            pairs: files
                .iter()
                .map(|files| Pair {
                    files: files.clone(),
                    stamp: None,
                    installed: None,
                })
                .collect(),
        };
        for index in 0..this.pairs.len() {
            let pair = &mut this.pairs[index];
            pair.stamp = stamp(&pair.files.cert).zip(stamp(&pair.files.key));
            let (key, names) = read(&pair.files)?;
            tracing::info!(
                cert = %pair.files.cert.display(),
                "serving a certificate for {}",
                names.join(", ")
            );
            this.install(index, key, names);
        }
        Ok(this)
    }

    /// Checks the files every `interval` for as long as the process runs.
    pub fn spawn_reload(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.check();
            }
        })
    }

    /// Reloads each pair whose files changed since they were last read.
    pub fn check(&mut self) {
        for index in 0..self.pairs.len() {
            let pair = &mut self.pairs[index];
            let now = stamp(&pair.files.cert).zip(stamp(&pair.files.key));
            if now == pair.stamp {
                continue;
            }
            pair.stamp = now;
            match read(&pair.files) {
                Ok((key, names)) => {
                    tracing::info!(
                        cert = %pair.files.cert.display(),
                        "the certificate changed on disk; now serving it for {}",
                        names.join(", ")
                    );
                    self.install(index, key, names);
                }
                Err(e) => tracing::error!(
                    cert = %pair.files.cert.display(),
                    key = %pair.files.key.display(),
                    "the certificate changed on disk but cannot be served ({e}); keeping the one loaded before"
                ),
            }
        }
    }

    fn install(&mut self, index: usize, key: Arc<CertifiedKey>, names: Vec<String>) {
        if let Some((old, old_names)) = self.pairs[index].installed.take() {
            for name in old_names.iter().filter(|n| !names.contains(n)) {
                self.store.remove_if(name, &old);
            }
        }
        self.store.insert(&names, key.clone());
        if index == 0 {
            self.store.set_default(Some(key.clone()));
        }
        self.pairs[index].installed = Some((key, names));
    }
}

/// One pair, read and checked: the key fits the certificate, which names at least one host.
fn read(files: &CertificateFiles) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsError> {
    let chain = std::fs::read(&files.cert).map_err(|source| TlsError::Read {
        path: files.cert.clone(),
        source,
    })?;
    let key = std::fs::read(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let key = certified_key_from_pem(&chain, &key).map_err(|e| match e {
        TlsError::Certificate(m) => TlsError::Certificate(format!("{}: {m}", files.cert.display())),
        other => other,
    })?;
    let names = dns_names(&key)?;
    if names.is_empty() {
        return Err(TlsError::Certificate(format!(
            "{} names no DNS host (subject alternative names)",
            files.cert.display()
        )));
    }
    Ok((Arc::new(key), names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> CertificateFiles {
        let cert = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("certificate");
        let files = CertificateFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.cert.pem()).expect("write");
        std::fs::write(&files.key, cert.key_pair.serialize_pem()).expect("write");
        files
    }

    #[test]
    fn a_changed_pair_replaces_the_old_and_a_bad_one_keeps_it() {
        let dir = tempfile::tempdir().expect("dir");
        let files = write_pair(dir.path(), &["*.example.com", "example.com"]);
        let store = Arc::new(CertStore::new());
        let mut loaded = CertFiles::load(store.clone(), std::slice::from_ref(&files)).expect("loads");
        assert!(store.covers("a.example.com") && store.covers("example.com"));
        assert!(store.default_certificate().is_some());

        // Renewed for other names: the old names go, the new come.
        write_pair(dir.path(), &["*.example.org"]);
        loaded.check();
        assert!(!store.covers("a.example.com"));
        assert!(store.covers("a.example.org"));
        let served = store.resolve("a.example.org").expect("served");

        // A bad key keeps what was served.
        std::fs::write(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        loaded.check();
        assert!(store.resolve("a.example.org").is_some_and(|k| Arc::ptr_eq(&k, &served)));
    }

    #[test]
    fn a_pair_that_does_not_load_at_start_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let files = CertificateFiles {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("missing.key"),
        };
        let err = CertFiles::load(Arc::new(CertStore::new()), &[files])
            .err()
            .expect("fails");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
