//! Store records → CRI `Image` messages.

use std::collections::HashMap;

use berth_images::Image as StoredImage;
use k8s_cri::v1::{Image, ImageSpec, Int64Value};

/// The CRI view of a stored image. USER `1000` or `1000:1000` gives a uid,
/// a name (`berth`, `berth:staff`) gives a username, as containerd reports.
pub fn to_cri_image(image: &StoredImage) -> Image {
    let user = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let (uid, username) = split_user(&user);
    Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: uid.map(|value| Int64Value { value }),
        username,
        spec: Some(ImageSpec {
            image: image.id.clone(),
            annotations: HashMap::new(),
            ..Default::default()
        }),
        pinned: image.pinned,
    }
}

fn split_user(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

/// The verbose `info` map of ImageStatus: the image config and where it lives.
pub fn verbose_info(image: &StoredImage) -> HashMap<String, String> {
    let info = serde_json::json!({
        "id": image.id,
        "manifestDigest": image.manifest_digest,
        "chainIDs": image.chain_ids,
        "createdAt": image.created_at,
        "imageSpec": image.config,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

#[cfg(test)]
mod tests {
    use super::split_user;

    #[test]
    fn user_forms() {
        assert_eq!(split_user(""), (None, String::new()));
        assert_eq!(split_user("1000"), (Some(1000), String::new()));
        assert_eq!(split_user("1000:1000"), (Some(1000), String::new()));
        assert_eq!(split_user("berth"), (None, "berth".to_string()));
        assert_eq!(split_user("berth:staff"), (None, "berth".to_string()));
        assert_eq!(split_user("0"), (Some(0), String::new()));
    }
}
