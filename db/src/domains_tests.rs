//! Custom domains on every backend: claims, proof of ownership, takeover, states.

use super::{databases, project, user};
use platform::domain::{Domain, DomainName, DomainState};

fn name(raw: &str) -> DomainName {
    DomainName::parse(raw).unwrap()
}

#[tokio::test]
async fn the_last_proven_claim_routes_and_pending_claims_block_no_one() {
    for (_guard, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        let a = project(&db, &ann, "ann-site").await;
        let b = project(&db, &bob, "bob-site").await;
        let shop = name("shop.example.com");

        // Both may claim the name; neither routes yet.
        let ta = Domain::new_token();
        let claim = db.add_domain(&a.id, &shop, &ta, None).await.unwrap();
        assert_eq!(claim.state, DomainState::PendingVerification);
        assert!(!claim.is_routed());
        db.add_domain(&b.id, &shop, &Domain::new_token(), None).await.unwrap();
        assert!(matches!(
            db.add_domain(&a.id, &shop, &ta, None).await,
            Err(crate::DbError::Conflict("domain"))
        ));
        assert_eq!(db.domain(&shop).await.unwrap(), None);

        // Bob's pending claim does not stop Ann from proving hers.
        assert_eq!(db.prove_domain(&a.id, &shop).await.unwrap(), Some(vec![]));
        let routed = db.domain(&shop).await.unwrap().unwrap();
        assert_eq!(
            (routed.project_id.clone(), routed.state),
            (a.id.clone(), DomainState::Verified)
        );
        assert_eq!(db.routed_domains(None).await.unwrap().len(), 1);
        assert_eq!(db.routed_domains(Some(&b.id)).await.unwrap().len(), 0);

        // A failed check of Bob's claim changes nothing for Ann.
        db.fail_domain_check(&b.id, &shop, "TXT not found").await.unwrap();
        let bobs = db.project_domain(&b.id, &shop).await.unwrap().unwrap();
        assert_eq!(
            (bobs.state, bobs.reason.as_deref()),
            (DomainState::Failed, Some("TXT not found"))
        );
        assert_eq!(db.domain(&shop).await.unwrap().unwrap().project_id, a.id);

        // Issuance moves the routed claim only.
        assert!(
            db.set_domain_state(&shop, DomainState::CertificateIssued, None)
                .await
                .unwrap()
        );
        assert_eq!(
            db.verified_domains().await.unwrap()[0].state,
            DomainState::CertificateIssued
        );
        // Proving again keeps an issued certificate's state.
        db.prove_domain(&a.id, &shop).await.unwrap();
        assert_eq!(
            db.domain(&shop).await.unwrap().unwrap().state,
            DomainState::CertificateIssued
        );

        // Bob proves ownership later (the DNS changed hands): the name moves, Ann is told why.
        assert_eq!(db.prove_domain(&b.id, &shop).await.unwrap(), Some(vec![a.id.clone()]));
        assert_eq!(db.domain(&shop).await.unwrap().unwrap().project_id, b.id);
        let anns = db.project_domain(&a.id, &shop).await.unwrap().unwrap();
        assert!(!anns.is_routed());
        assert_eq!(anns.state, DomainState::Failed);
        assert!(anns.reason.unwrap().contains("another project proved ownership"));
        assert_eq!(db.verified_domains().await.unwrap().len(), 1);

        // Removing the routed claim stops routing; no claim, nothing to prove.
        assert!(db.delete_domain(&b.id, &shop).await.unwrap());
        assert!(!db.delete_domain(&b.id, &shop).await.unwrap());
        assert_eq!(db.domain(&shop).await.unwrap(), None);
        assert_eq!(db.prove_domain(&b.id, &shop).await.unwrap(), None);
        assert!(
            !db.set_domain_state(&shop, DomainState::Failed, Some("x"))
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn redirects_and_project_deletion() {
    for (_guard, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let a = project(&db, &ann, "ann-site").await;
        let apex = name("example.com");
        let www = name("www.example.com");
        db.add_domain(&a.id, &apex, "t1", None).await.unwrap();
        db.add_domain(&a.id, &www, "t2", Some(&apex)).await.unwrap();
        db.prove_domain(&a.id, &www).await.unwrap();
        let routed = db.routed_domains(Some(&a.id)).await.unwrap().remove(&a.id).unwrap();
        assert_eq!(routed[0].redirect_to, Some(apex.clone()));
        assert_eq!(db.count_project_domains(&a.id).await.unwrap(), 2);

        // Removing the target drops the redirect to it.
        db.delete_domain(&a.id, &apex).await.unwrap();
        assert_eq!(db.project_domain(&a.id, &www).await.unwrap().unwrap().redirect_to, None);

        // A deleted project's domains go with it.
        db.delete_project(&a.id).await.unwrap();
        assert_eq!(db.domain(&www).await.unwrap(), None);
        assert_eq!(db.count_project_domains(&a.id).await.unwrap(), 0);
    }
}
