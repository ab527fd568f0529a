//! Parsing of configured store locations.

use super::*;

#[test]
fn locations_parse() {
    assert_eq!(
        ArtifactLocation::parse("file:///var/lib/cloudrunr/artifacts").unwrap(),
        ArtifactLocation::Local(PathBuf::from("/var/lib/cloudrunr/artifacts"))
    );
    assert_eq!(
        ArtifactLocation::parse("s3://my-bucket.example/cloudrunr/prod/").unwrap(),
        ArtifactLocation::S3(S3Location {
            bucket: "my-bucket.example".into(),
            prefix: "cloudrunr/prod".into(),
        })
    );
    for whole_bucket in ["s3://abc", "s3://abc/", "s3://abc//"] {
        assert_eq!(
            ArtifactLocation::parse(whole_bucket).unwrap(),
            ArtifactLocation::S3(S3Location {
                bucket: "abc".into(),
                prefix: String::new(),
            }),
            "{whole_bucket}"
        );
    }
    for raw in ["file:///srv/a", "s3://bucket-1/a/b_c/(d)", "s3://bucket-1"] {
        assert_eq!(ArtifactLocation::parse(raw).unwrap().to_string(), raw);
    }
}

#[test]
fn bad_locations_are_refused() {
    for raw in [
        "",
        "/var/lib/artifacts",
        "file://relative/dir",
        "http://bucket/prefix",
        "S3://bucket/prefix",
        "s3://",
        "s3://ab",
        "s3://Bucket",
        "s3://bucket_name",
        "s3://-bucket",
        "s3://bucket-",
        "s3://my..bucket",
        "s3://192.168.1.1",
        "s3://xn--bucket",
        "s3://bucket-s3alias",
        &format!("s3://{}", "a".repeat(64)),
        "s3://bucket/../etc",
        "s3://bucket/a/../b",
        "s3://bucket/a/./b",
        "s3://bucket/a//b",
        "s3://bucket/a b",
        "s3://bucket/a?b",
        "s3://bucket/a#b",
        "s3://bucket/a\\b",
        "s3://bucket/é",
    ] {
        let err = ArtifactLocation::parse(raw).expect_err(raw);
        assert_eq!(err.location, raw);
        assert!(!err.reason.is_empty());
    }
    assert!(
        ArtifactLocation::parse("s3://bucket/..")
            .unwrap_err()
            .reason
            .contains("..")
    );
}
