//! The DNS lookups behind verification, through hickory-resolver: the configured server
//! (`CLOUDRUNR_DNS_RESOLVER`), or the system's.
//!
//! A resolver is built for each verification and caches nothing: a tenant who just fixed a
//! record and presses Verify again must be judged on the answer of now, not on one kept for its
//! TTL (an upstream resolver may still cache; the reason shows what was seen).

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use platform::domain::{DnsAnswers, DomainName};
use platform::settings::DomainSettings;
use std::time::Duration;

/// How long one query may wait for its answer, and how many times it is tried.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPTS: usize = 2;

fn resolver(settings: &DomainSettings) -> Result<TokioResolver, ResolveError> {
    let mut options = ResolverOpts::default();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = ATTEMPTS;
    options.cache_size = 0;
    // Names are asked fully qualified, never through search domains or /etc/hosts.
    options.ndots = 0;
    options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    let builder = match settings.dns_resolver {
        Some(server) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => Resolver::builder_tokio()?,
    };
    Ok(builder.with_options(options).build())
}

/// What DNS says about `name` now: the TXT proof, the CNAME and the addresses.
pub(crate) async fn look_up(settings: &DomainSettings, name: &DomainName) -> DnsAnswers {
    let mut answers = DnsAnswers::default();
    let resolver = match resolver(settings) {
        Ok(r) => r,
        Err(e) => {
            answers.errors.push(format!("no DNS resolver: {e}"));
            return answers;
        }
    };
    let fqdn = format!("{name}.");
    let proof = format!("{}.", name.proof_name());
    let (txt, cname, v4, v6) = tokio::join!(
        resolver.txt_lookup(proof.as_str()),
        resolver.lookup(fqdn.as_str(), RecordType::CNAME),
        resolver.ipv4_lookup(fqdn.as_str()),
        resolver.ipv6_lookup(fqdn.as_str()),
    );
    match txt {
        // A TXT record may be split into several strings of at most 255 bytes: they are one value.
        Ok(found) => answers.txt.extend(found.iter().map(|t| {
            t.txt_data()
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect::<String>()
        })),
        Err(e) => note("TXT", &proof, e, &mut answers),
    }
    match cname {
        Ok(found) => {
            answers.cname = found.record_iter().find_map(|r| match r.data() {
                RData::CNAME(target) if r.name().to_ascii().eq_ignore_ascii_case(&fqdn) => {
                    Some(target.0.to_ascii().trim_end_matches('.').to_owned())
                }
                _ => None,
            })
        }
        Err(e) => note("CNAME", &fqdn, e, &mut answers),
    }
    match v4 {
        Ok(found) => answers
            .addresses
            .extend(found.iter().map(|a| std::net::IpAddr::V4(a.0))),
        Err(e) => note("A", &fqdn, e, &mut answers),
    }
    match v6 {
        Ok(found) => answers
            .addresses
            .extend(found.iter().map(|a| std::net::IpAddr::V6(a.0))),
        Err(e) => note("AAAA", &fqdn, e, &mut answers),
    }
    answers
}

/// Keeps a failed lookup's error, unless it only says there is no such record (an answer, not
/// a failure: the judgement names what is missing).
fn note(kind: &str, name: &str, e: ResolveError, answers: &mut DnsAnswers) {
    if !(e.is_no_records_found() || e.is_nx_domain()) {
        answers
            .errors
            .push(format!("{kind} {}: {e}", name.trim_end_matches('.')));
    }
}
