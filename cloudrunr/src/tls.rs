//! The TLS listener beside the plain one: its certificates, its endpoint, and plain HTTP's
//! redirect to it.

use crate::server::{self, Endpoint};
use anyhow::Context;
use axum::middleware::from_fn_with_state;
use platform::settings::Settings;
use router::tls::files::CertFiles;
use router::tls::redirect::{Redirector, redirect_to_https};
use router::tls::{CertStore, OnDemand, TlsEdge};
use router::wire::SiteConnections;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binds the TLS listener when one is configured.
pub async fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Option<(TcpListener, SocketAddr)>> {
    match addr {
        Some(addr) => Ok(Some(server::bind(addr).await?)),
        None => Ok(None),
    }
}

/// The endpoints to serve: the plain listener alone, or — with TLS on — the TLS listener too,
/// and the plain one redirecting to it every host a certificate covers.
///
/// `store` holds the certificates served; the configured files are loaded into it here (and
/// reloaded when they change), and an issuer may fill it too. `on_demand` is asked during a
/// handshake for a name the store has nothing for.
pub fn endpoints(
    settings: &Settings,
    plain: TcpListener,
    tls: Option<(TcpListener, SocketAddr)>,
    app: axum::Router,
    sites: Option<SiteConnections>,
    store: Arc<CertStore>,
    on_demand: Arc<dyn OnDemand>,
) -> anyhow::Result<Vec<Endpoint>> {
    let Some((tls_listener, tls_bound)) = tls else {
        return Ok(vec![Endpoint::plain(plain, app, sites)]);
    };
    if settings.tls.files.is_empty() {
        tracing::warn!(
            "TLS is on without CLOUDRUNR_TLS_CERT: handshakes succeed only for names a certificate is issued for"
        );
    } else {
        CertFiles::load(store.clone(), &settings.tls.files)
            .context("cannot load the TLS certificate")?
            .spawn_reload(settings.tls.reload_interval);
    }
    let edge = Arc::new(TlsEdge::new(store.clone(), on_demand, settings.tls.handshake_timeout)?);
    // Redirects go where site URLs point: the TLS port as users reach it.
    let https_port = match settings.sites.scheme.as_str() {
        "https" => settings.sites.port,
        _ => Some(tls_bound.port()),
    };
    let redirector = Redirector::new(store, https_port);
    tracing::info!("listening for HTTPS on {tls_bound}");
    let plain_app = app
        .clone()
        .layer(from_fn_with_state(redirector.clone(), redirect_to_https));
    Ok(vec![
        Endpoint::plain(plain, plain_app, sites.as_ref().map(|s| s.redirecting(redirector))),
        Endpoint::tls(tls_listener, app, sites.as_ref().map(SiteConnections::https), edge),
    ])
}
