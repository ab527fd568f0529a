//! The certificates served, by name: read at every handshake without a lock.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Certificates by the names they are served for: exact names (`blog.example.com`) and wildcards
/// (`*.example.com`, which covers exactly one more label, as in certificates), plus an optional
/// default certificate for clients that name no host or one nothing covers.
///
/// Reads (every TLS handshake, every plain-HTTP request deciding on a redirect) load the current
/// map from an [`ArcSwap`]; writes copy it, change the copy and swap it in, one at a time.
#[derive(Default)]
pub struct CertStore {
    current: ArcSwap<Certs>,
    writes: Mutex<()>,
}

#[derive(Default, Clone)]
struct Certs {
    /// Exact names, lowercase, without a trailing dot.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Wildcards by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// A name as certificates and lookups compare it: lowercase, without a trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key` for each of `names` (exact names and `*.` wildcards), replacing what served
    /// them before.
    pub fn insert<N: AsRef<str>>(&self, names: impl IntoIterator<Item = N>, key: Arc<CertifiedKey>) {
        self.update(|certs| {
            for name in names {
                let name = normalize(name.as_ref());
                match name.strip_prefix("*.") {
                    Some(suffix) => certs.wildcard.insert(suffix.to_owned(), key.clone()),
                    None => certs.exact.insert(name, key.clone()),
                };
            }
        });
    }

    /// Stops serving anything for `name` (an exact name or a `*.` wildcard).
    pub fn remove(&self, name: &str) {
        let name = normalize(name);
        self.update(|certs| match name.strip_prefix("*.") {
            Some(suffix) => drop(certs.wildcard.remove(suffix)),
            None => drop(certs.exact.remove(&name)),
        });
    }

    /// Stops serving `key` for `name`, if `key` is still what serves it: a source replacing its
    /// own certificate does not take away a name another source has since put its certificate on.
    pub fn remove_if(&self, name: &str, key: &Arc<CertifiedKey>) {
        let name = normalize(name);
        self.update(|certs| {
            let map = match name.strip_prefix("*.") {
                Some(suffix) => certs.wildcard.get_mut(suffix).map(|k| (suffix.to_owned(), k)),
                None => certs.exact.get_mut(&name).map(|k| (name.clone(), k)),
            };
            if let Some((key_name, current)) = map
                && Arc::ptr_eq(current, key)
            {
                match name.starts_with("*.") {
                    true => drop(certs.wildcard.remove(&key_name)),
                    false => drop(certs.exact.remove(&key_name)),
                }
            }
        });
    }

    /// Sets (or, with `None`, clears) the certificate for names nothing else covers.
    pub fn set_default(&self, key: Option<Arc<CertifiedKey>>) {
        self.update(|certs| certs.default = key);
    }

    /// The certificate for `sni`: its exact name, else the wildcard one label up. `None` when no
    /// certificate covers it (the default certificate is not consulted here).
    pub fn resolve(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        let name = sni.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(key) = certs.exact.get(name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        // `*.example.com` covers `a.example.com`, not `example.com` and not `a.b.example.com`.
        certs.wildcard.get(parent).filter(|_| !parent.is_empty()).cloned()
    }

    /// Whether some certificate (not just the default one) covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// The default certificate, if there is one.
    pub fn default_certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().default.clone()
    }

    fn update(&self, change: impl FnOnce(&mut Certs)) {
        let _write = self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut certs = Certs::clone(&self.current.load());
        change(&mut certs);
        self.current.store(Arc::new(certs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certified_key_from_pem;

    fn key(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::generate_simple_self_signed(names).expect("certificate");
        let key = certified_key_from_pem(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())
            .expect("certified key");
        Arc::new(key)
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let store = CertStore::new();
        let wild = key(&["*.example.com"]);
        let blog = key(&["blog.example.com"]);
        store.insert(["*.example.com"], wild.clone());
        store.insert(["Blog.Example.com."], blog.clone());
        let is = |sni: &str, k: &Arc<CertifiedKey>| store.resolve(sni).is_some_and(|r| Arc::ptr_eq(&r, k));
        assert!(is("blog.example.com", &blog));
        assert!(is("BLOG.example.com.", &blog));
        assert!(is("shop.example.com", &wild));
        assert!(is("main--shop.example.com", &wild));
        assert!(
            store.resolve("example.com").is_none(),
            "a wildcard does not cover its apex"
        );
        assert!(
            store.resolve("a.b.example.com").is_none(),
            "a wildcard covers one label"
        );
        assert!(store.resolve("example.org").is_none());
        assert!(store.resolve("").is_none());
        assert!(store.resolve(".").is_none());
        store.remove("blog.example.com");
        assert!(is("blog.example.com", &wild));
        store.remove("*.example.com");
        assert!(!store.covers("blog.example.com"));
    }

    #[test]
    fn the_default_certificate_covers_no_name() {
        let store = CertStore::new();
        let platform = key(&["example.com"]);
        store.set_default(Some(platform.clone()));
        assert!(!store.covers("unknown.test"));
        assert!(store.default_certificate().is_some_and(|d| Arc::ptr_eq(&d, &platform)));
        store.set_default(None);
        assert!(store.default_certificate().is_none());
    }

    #[test]
    fn removing_only_what_is_still_ones_own() {
        let store = CertStore::new();
        let (old, other) = (key(&["a.test"]), key(&["a.test"]));
        store.insert(["a.test", "*.a.test"], old.clone());
        store.insert(["a.test"], other.clone());
        store.remove_if("a.test", &old);
        store.remove_if("*.a.test", &old);
        assert!(store.resolve("a.test").is_some_and(|k| Arc::ptr_eq(&k, &other)));
        assert!(store.resolve("x.a.test").is_none());
    }
}
