//! A cookie-keeping HTTP client for the dashboard's HTML pages and forms.

use crate::Platform;

/// A plain HTTP client that keeps cookies and does not follow redirects, like a minimal browser.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: std::collections::HashMap<String, String>,
}

impl Client {
    pub fn new(p: &Platform) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client {
            http,
            base: p.base.clone(),
            cookies: std::collections::HashMap::new(),
        }
    }

    pub fn keep(&mut self, headers: &reqwest::header::HeaderMap) {
        for c in headers.get_all(reqwest::header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> (reqwest::StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        (resp.status(), resp.text().await.unwrap())
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        self.keep(resp.headers());
        resp
    }

    /// Signs up through the form, as a browser would.
    pub async fn sign_up(&mut self, name: &str, email: &str) -> reqwest::Response {
        let (_, page) = self.get("/signup").await;
        let csrf = csrf_of(&page);
        self.post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("email", email),
                ("password", "correct horse battery"),
            ],
            None,
        )
        .await
    }
}

/// The anti-forgery token in a page's first form.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a csrf token");
    page[at + 19..].split('"').next().unwrap().to_owned()
}
