//! The in-memory routing table: host label → site → production manifest.
//!
//! A table is never modified once published. Updates build a new one and swap it in whole, so a
//! request holding an `Arc<Site>` sees one deployment from its first lookup to its last byte.
//!
//! Besides labels under the platform's domain, a site answers to its project's verified custom
//! domains (whole host names), each maybe a redirect to the other half of a `www` ↔ apex pair.

use db::RoutedDomain;
use platform::artifacts::Manifest;
use platform::domain::DomainName;
use platform::{DeploymentId, ProjectId, ProjectSlug};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// What a site serves right now.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// The project exists but nothing was promoted to production yet.
    NotDeployed,
    Live(Arc<Manifest>),
    /// Production points at a deployment whose manifest could not be read, and there was no
    /// earlier content to keep serving.
    Unavailable,
}

#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) project_id: ProjectId,
    pub(crate) slug: ProjectSlug,
    pub(crate) content: Content,
    /// Preview deployments by the branch part of their label (`<part>--<slug>`).
    pub(crate) previews: HashMap<String, Arc<Manifest>>,
    /// Every ready deployment by its short id (`<short>--<slug>`); manifests load on demand.
    pub(crate) ready: HashMap<String, DeploymentId>,
    /// The project's verified custom domains.
    pub(crate) domains: Vec<RoutedDomain>,
    /// HTTPS answers carry `Strict-Transport-Security` (the project opted in).
    pub(crate) hsts: bool,
}

impl Site {
    /// The loaded manifest of a preview deployment, if this site has it.
    pub(crate) fn preview_manifest(&self, deployment: &DeploymentId) -> Option<Arc<Manifest>> {
        self.previews.values().find(|m| m.deployment_id == *deployment).cloned()
    }

    /// The manifest this site serves, if it is for `deployment` (manifests never change, so a
    /// loaded one can be reused instead of read again).
    pub(crate) fn manifest_for(&self, deployment: &DeploymentId) -> Option<Arc<Manifest>> {
        match &self.content {
            Content::Live(m) if m.deployment_id == *deployment => Some(Arc::clone(m)),
            _ => None,
        }
    }

    pub(crate) fn live_manifest(&self) -> Option<Arc<Manifest>> {
        match &self.content {
            Content::Live(m) => Some(Arc::clone(m)),
            _ => None,
        }
    }
}

/// The host label a slug answers to. Slugs are lowercase already; this keeps lookups
/// case-insensitive even if that ever changed.
fn label_of(slug: &ProjectSlug) -> String {
    slug.as_str().to_ascii_lowercase()
}

/// Sites by host label, with the reverse index that lets a renamed or deleted project's old label
/// be dropped. Invariant: `by_project[p] == l` exactly when `by_label[l]` is project `p`'s site.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    by_label: HashMap<String, Arc<Site>>,
    by_project: HashMap<ProjectId, String>,
    /// Custom host names → the project they route to. Invariant: every entry names a project in
    /// `by_project` whose site lists the name among its domains.
    by_host: HashMap<String, ProjectId>,
}

/// What a custom host name answers with.
pub(crate) enum Custom<'t> {
    /// The project's production site.
    Site(&'t Arc<Site>),
    /// A permanent redirect to this host (the other half of a `www` ↔ apex pair).
    Redirect(&'t DomainName),
}

impl Table {
    pub(crate) fn from_sites(sites: impl IntoIterator<Item = Site>) -> Self {
        let mut table = Self::default();
        for site in sites {
            table.insert(site);
        }
        table
    }

    /// The site whose label is `label`, compared case-insensitively (DNS names are).
    pub(crate) fn lookup(&self, label: &str) -> Option<&Arc<Site>> {
        if label.len() > ProjectSlug::MAX_LEN {
            return None;
        }
        let key = if label.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(label.to_ascii_lowercase())
        } else {
            Cow::Borrowed(label)
        };
        self.by_label.get(key.as_ref())
    }

    /// What the custom host `name` (lowercase, no port) answers with, if it is routed.
    pub(crate) fn custom(&self, name: &str) -> Option<Custom<'_>> {
        let site = self.by_host.get(name).and_then(|p| self.site_of(p))?;
        let domain = site.domains.iter().find(|d| d.name.as_str() == name)?;
        // A redirect only to a name that routes here too: until the other half of the pair is
        // verified, this name serves the site itself rather than send visitors nowhere.
        Some(match &domain.redirect_to {
            Some(target) if site.domains.iter().any(|d| d.name == *target) => Custom::Redirect(target),
            _ => Custom::Site(site),
        })
    }

    pub(crate) fn site_of(&self, project: &ProjectId) -> Option<&Arc<Site>> {
        self.by_project.get(project).and_then(|label| self.by_label.get(label))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_label.len()
    }

    /// Adds or replaces the project's site, dropping its old label. If another project held the
    /// new label (two slugs swapped, and its own reload has not arrived yet), that project is
    /// dropped from the table: the database says the label is no longer its.
    pub(crate) fn insert(&mut self, site: Site) {
        self.remove(&site.project_id);
        let label = label_of(&site.slug);
        let project = site.project_id.clone();
        // The database routes a name to one project; a name still held here by another project
        // (its reload has not arrived yet) goes to the one that proved ownership last, this one.
        for domain in &site.domains {
            self.by_host.insert(domain.name.as_str().to_owned(), project.clone());
        }
        if let Some(displaced) = self.by_label.insert(label.clone(), Arc::new(site))
            && displaced.project_id != project
        {
            self.by_project.remove(&displaced.project_id);
            self.by_host.retain(|_, p| *p != displaced.project_id);
        }
        self.by_project.insert(project, label);
    }

    pub(crate) fn remove(&mut self, project: &ProjectId) {
        if let Some(site) = self.site_of(project).cloned() {
            for domain in &site.domains {
                if self.by_host.get(domain.name.as_str()) == Some(project) {
                    self.by_host.remove(domain.name.as_str());
                }
            }
        }
        if let Some(label) = self.by_project.remove(project)
            && self.by_label.get(&label).is_some_and(|s| s.project_id == *project)
        {
            self.by_label.remove(&label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(project: &ProjectId, slug: &str) -> Site {
        Site {
            project_id: project.clone(),
            slug: ProjectSlug::parse(slug).unwrap_or_else(|e| panic!("{slug}: {e}")),
            content: Content::NotDeployed,
            previews: HashMap::new(),
            ready: HashMap::new(),
            domains: Vec::new(),
            hsts: false,
        }
    }

    fn with_domains(mut site: Site, names: &[(&str, Option<&str>)]) -> Site {
        site.domains = names
            .iter()
            .map(|(n, r)| RoutedDomain {
                name: DomainName::parse(n).unwrap(),
                redirect_to: r.map(|r| DomainName::parse(r).unwrap()),
            })
            .collect();
        site
    }

    fn custom_owner(t: &Table, name: &str) -> Option<ProjectId> {
        match t.custom(name)? {
            Custom::Site(s) => Some(s.project_id.clone()),
            Custom::Redirect(_) => None,
        }
    }

    #[test]
    fn custom_hosts_follow_their_project() {
        let a = ProjectId::generate();
        let b = ProjectId::generate();
        let mut t = Table::from_sites([with_domains(
            site(&a, "a"),
            &[("shop.example.com", None), ("www.example.com", Some("example.com"))],
        )]);
        assert_eq!(custom_owner(&t, "shop.example.com"), Some(a.clone()));
        // The redirect's target is not verified: www serves the site itself.
        assert_eq!(custom_owner(&t, "www.example.com"), Some(a.clone()));
        assert!(t.custom("example.com").is_none());
        t.insert(with_domains(
            site(&a, "a"),
            &[
                ("shop.example.com", None),
                ("www.example.com", Some("example.com")),
                ("example.com", None),
            ],
        ));
        assert!(matches!(t.custom("www.example.com"), Some(Custom::Redirect(r)) if r.as_str() == "example.com"));
        assert_eq!(custom_owner(&t, "example.com"), Some(a.clone()));

        // The name moves to b (b proved ownership): b's reload takes it even before a's arrives.
        t.insert(with_domains(site(&b, "b"), &[("shop.example.com", None)]));
        assert_eq!(custom_owner(&t, "shop.example.com"), Some(b.clone()));
        // a's reload (without the name) does not take it from b.
        t.insert(with_domains(site(&a, "a"), &[("www.example.com", Some("example.com"))]));
        assert_eq!(custom_owner(&t, "shop.example.com"), Some(b.clone()));
        // Removing a project drops its names, and only its own.
        t.remove(&a);
        assert!(t.custom("www.example.com").is_none());
        assert_eq!(custom_owner(&t, "shop.example.com"), Some(b.clone()));
        // A reload without the domain (it was removed) stops routing it.
        t.insert(site(&b, "b"));
        assert!(t.custom("shop.example.com").is_none());
        assert!(t.by_host.is_empty());
    }

    fn owner(t: &Table, label: &str) -> Option<ProjectId> {
        t.lookup(label).map(|s| s.project_id.clone())
    }

    #[test]
    fn lookups_ignore_case() {
        let a = ProjectId::generate();
        let t = Table::from_sites([site(&a, "blog")]);
        assert_eq!(owner(&t, "blog"), Some(a.clone()));
        assert_eq!(owner(&t, "BLOG"), Some(a.clone()));
        assert_eq!(owner(&t, "Blog"), Some(a));
        assert_eq!(owner(&t, "blogs"), None);
        assert_eq!(owner(&t, &"b".repeat(500)), None);
    }

    #[test]
    fn renames_drop_the_old_label() {
        let a = ProjectId::generate();
        let mut t = Table::from_sites([site(&a, "old")]);
        t.insert(site(&a, "new"));
        assert_eq!(owner(&t, "old"), None);
        assert_eq!(owner(&t, "new"), Some(a.clone()));
        assert_eq!(t.len(), 1);
        t.remove(&a);
        assert_eq!(owner(&t, "new"), None);
        assert_eq!(t.len(), 0);
        assert!(t.site_of(&a).is_none());
    }

    #[test]
    fn swapped_slugs_settle_whatever_the_order() {
        let a = ProjectId::generate();
        let b = ProjectId::generate();
        let mut t = Table::from_sites([site(&a, "x"), site(&b, "y")]);
        // b takes x first: a is dropped until its own reload arrives.
        t.insert(site(&b, "x"));
        assert_eq!(owner(&t, "x"), Some(b.clone()));
        assert_eq!(owner(&t, "y"), None);
        assert!(t.site_of(&a).is_none());
        t.insert(site(&a, "y"));
        assert_eq!(owner(&t, "x"), Some(b.clone()));
        assert_eq!(owner(&t, "y"), Some(a.clone()));
        // Removing a project never removes a label another project holds.
        t.remove(&a);
        assert_eq!(owner(&t, "x"), Some(b));
        assert_eq!(t.len(), 1);
    }
}
