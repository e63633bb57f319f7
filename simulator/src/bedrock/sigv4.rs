//! Checking AWS Signature Version 4 as AWS does, written from AWS's
//! description of the algorithm (not from a signing library, so the
//! worker's signer is checked by an independent reading): the canonical
//! request (method, the path with each segment URI-encoded once more, the
//! sorted query, the signed headers, the payload's SHA-256), the string to
//! sign with the credential scope, and the HMAC chain of the signing key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// What the `Authorization` header of a signed request says.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub access_key: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, in the order given (`;`-separated).
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/bedrock/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=hex`.
pub(crate) fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization header requires the AWS4-HMAC-SHA256 algorithm")?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| {
        format!("Authorization header requires '{what}' parameter. Authorization={value}")
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(format!(
            "Credential should be scoped to a valid region, a service and 'aws4_request'. Credential={credential}"
        ));
    }
    Ok(Authorization {
        access_key: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature: signature.to_string(),
    })
}

/// URI-encodes a string as SigV4 does: everything but the unreserved
/// characters, upper-case hex.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI of a path as the client sent it (already encoded):
/// encoded once more, as every service but S3 expects.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    uri_encode(path, true)
}

/// The canonical query: pairs sorted by name then value, each encoded.
fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let decode = |s: &str| {
        let bytes: Vec<u8> = form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// One request as the signature covers it.
pub struct Signable<'a> {
    pub method: &'a str,
    /// The path exactly as sent (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The value of each signed header (`None`: the request lacks it).
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    /// `x-amz-date`: `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// The signature `secret` makes of a request under `auth`'s scope.
pub(crate) fn signature(
    auth: &Authorization,
    secret: &str,
    r: &Signable<'_>,
) -> Result<String, String> {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let value = (r.header)(name).ok_or_else(|| {
            format!("'{name}' is named in SignedHeaders but the request does not carry it")
        })?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        canonical_uri(r.path),
        canonical_query(r.query),
        headers,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(r.body))
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), &auth.date);
    let k_region = hmac(&k_date, &auth.region);
    let k_service = hmac(&k_region, &auth.service);
    let k_signing = hmac(&k_service, "aws4_request");
    Ok(hex::encode(hmac(&k_signing, &to_sign)))
}

/// Compares two signatures in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example (the `get-vanilla` case of the SigV4 test
    /// suite, credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY).
    #[test]
    fn matches_the_aws_test_suite_vanilla_get() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        )
        .unwrap();
        let header = |n: &str| match n {
            "host" => Some("example.amazonaws.com".to_string()),
            "x-amz-date" => Some("20150830T123600Z".to_string()),
            _ => None,
        };
        let r = Signable {
            method: "GET",
            path: "/",
            query: None,
            header: &header,
            body: b"",
            amz_date: "20150830T123600Z",
        };
        let got = signature(&auth, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &r).unwrap();
        assert!(same(&got, &auth.signature), "{got}");
    }

    #[test]
    fn paths_are_encoded_once_more_and_queries_sorted() {
        assert_eq!(
            canonical_uri("/model/amazon.nova-lite-v1%3A0/converse"),
            "/model/amazon.nova-lite-v1%253A0/converse"
        );
        assert_eq!(canonical_query(Some("b=2&a=x%20y")), "a=x%20y&b=2");
        assert!(parse_authorization("Bearer x").is_err());
    }
}
