//! The Storecove stand-in refuses what Storecove refuses: each documented rule of the
//! submission body, the key, and the queue's and evidence's answers, checked over HTTP by hand.

use base64::Engine as _;
use postbud_sandbox::storecove::{API_KEY, LEGAL_ENTITY_ID, Storecove, StorecoveConfig};
use serde_json::{Value, json};

const UBL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
 xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
 xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
 <cac:AccountingCustomerParty><cac:Party><cbc:EndpointID schemeID="0192">974760673</cbc:EndpointID></cac:Party></cac:AccountingCustomerParty>
</Invoice>"#;

/// A change to the valid body.
type Change = Box<dyn Fn(&mut Value)>;

const GUID: &str = "0f1e2d3c-4b5a-8968-9786-a5b4c3d2e1f0";

fn body() -> Value {
    json!({
        "legalEntityId": LEGAL_ENTITY_ID,
        "idempotencyGuid": GUID,
        "routing": {"eIdentifiers": [{"scheme": "NO:ORG", "id": "974760673"}]},
        "document": {"documentType": "invoice", "rawDocumentData": {
            "document": base64::engine::general_purpose::STANDARD.encode(UBL),
            "parse": true, "parseStrategy": "ubl"}},
    })
}

async fn post(s: &Storecove, key: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/document_submissions", s.api_url()))
        .json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("answer");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
    )
}

#[tokio::test]
async fn each_rule_of_the_submission_is_enforced() {
    let s = Storecove::start(StorecoveConfig::default())
        .await
        .expect("stand-in");
    assert_eq!(post(&s, None, &body()).await.0, 401);
    assert_eq!(post(&s, Some("other"), &body()).await.0, 401);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "unknown field",
            Box::new(|b| b["extra"] = json!(1)),
            "extra",
        ),
        (
            "missing routing",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("routing");
            }),
            "routing",
        ),
        (
            "unknown entity",
            Box::new(|b| b["legalEntityId"] = json!(7)),
            "legalEntityId",
        ),
        (
            "short guid",
            Box::new(|b| b["idempotencyGuid"] = json!(&GUID[1..])),
            "idempotencyGuid",
        ),
        (
            "document type",
            Box::new(|b| b["document"]["documentType"] = json!("creditnote")),
            "documentType",
        ),
        (
            "parse false",
            Box::new(|b| b["document"]["rawDocumentData"]["parse"] = json!(false)),
            "rawDocumentData",
        ),
        (
            "unknown nested field",
            Box::new(|b| b["document"]["rawDocumentData"]["x"] = json!("y")),
            "rawDocumentData.x",
        ),
        (
            "not base64",
            Box::new(|b| b["document"]["rawDocumentData"]["document"] = json!("%%%")),
            "base64",
        ),
        (
            "the ICD, not Storecove's name",
            Box::new(|b| b["routing"]["eIdentifiers"][0]["scheme"] = json!("0192")),
            "unknown scheme",
        ),
        (
            "another buyer",
            Box::new(|b| b["routing"]["eIdentifiers"][0]["id"] = json!("923609016")),
            "EndpointID",
        ),
        (
            "another scheme",
            Box::new(|b| b["routing"]["eIdentifiers"][0]["scheme"] = json!("SE:ORGNR")),
            "EndpointID",
        ),
        (
            "an entity in the UBL",
            Box::new(|b| {
                let xml = format!(
                    "<!DOCTYPE Invoice [<!ENTITY x \"y\">]>{}",
                    UBL.split_once("?>").unwrap().1
                );
                b["document"]["rawDocumentData"]["document"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(xml));
            }),
            "well-formed",
        ),
    ];
    for (what, change, expected) in cases {
        let mut b = body();
        change(&mut b);
        let (status, text) = post(&s, Some(API_KEY), &b).await;
        assert_eq!(status, 422, "{what}: {text}");
        assert!(text.contains(expected), "{what}: {text}");
    }
    assert!(s.submissions().is_empty());
    let (status, text) = post(&s, Some(API_KEY), &body()).await;
    assert_eq!(status, 200, "{text}");
    let guid = serde_json::from_str::<Value>(&text).unwrap()["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, text) = post(&s, Some(API_KEY), &body()).await;
    assert_eq!(status, 422);
    assert!(text.contains("idempotencyGuid"), "{text}");
    assert_eq!(s.submissions().len(), 1);
    assert_eq!(s.ubl(), vec![UBL.as_bytes().to_vec()]);

    // The queue: empty, then the event until deleted; evidence 404 until succeeded.
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{}{path}", s.api_url()))
            .bearer_auth(API_KEY)
    };
    let evidence = format!("/document_submissions/{guid}/evidence/sending");
    assert_eq!(
        get("/webhook_instances/".into())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(get(evidence.clone()).send().await.unwrap().status(), 404);
    let instance = s.succeed(GUID).expect("settled");
    for _ in 0..2 {
        let head: Value = get("/webhook_instances/".into())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(head["guid"], json!(instance));
        let event: Value = serde_json::from_str(head["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            (
                event["guid"].as_str(),
                event["idempotencyGuid"].as_str(),
                event["status"].as_str()
            ),
            (Some(guid.as_str()), Some(GUID), Some("succeeded"))
        );
    }
    assert_eq!(get(evidence).send().await.unwrap().status(), 200);
    let delete = |g: String| {
        http.delete(format!("{}/webhook_instances/{g}", s.api_url()))
            .bearer_auth(API_KEY)
    };
    assert_eq!(delete(instance.clone()).send().await.unwrap().status(), 204);
    assert_eq!(delete(instance).send().await.unwrap().status(), 404);
    assert_eq!(
        get("/webhook_instances/".into())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}
