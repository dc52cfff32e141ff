//! PullImage: fetch an image into the store and answer its ID.

use std::sync::Arc;

use base64::Engine as _;
use berth_images::registry::Credentials;
use berth_images::ImageService as ImageStore;
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};

use super::required_image;
use crate::error::CriError;

#[tracing::instrument(skip_all, fields(image = tracing::field::Empty))]
pub async fn pull_image(store: Arc<ImageStore>, request: PullImageRequest) -> Result<PullImageResponse, CriError> {
    let image = required_image(request.image.as_ref(), "image.image")?;
    tracing::Span::current().record("image", image.as_str());
    let credentials = request.auth.as_ref().map(credentials_from).transpose()?.flatten();
    // The pull runs in its own task: a kubelet that gives up (or a dropped
    // connection) must not cancel it half-way; its result stays in the store.
    let pulled = tokio::spawn(async move { store.pull(&image, credentials).await })
        .await
        .map_err(|e| CriError::Internal(format!("pull task failed: {e}")))??;
    tracing::info!(id = %pulled.id, "pulled");
    Ok(PullImageResponse { image_ref: pulled.id })
}

/// CRI `AuthConfig` → registry credentials. `auth` is base64("user:password").
fn credentials_from(auth: &AuthConfig) -> Result<Option<Credentials>, CriError> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (mut username, mut password) = (some(&auth.username), some(&auth.password));
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CriError::invalid("auth.auth", "is not base64"))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| CriError::invalid("auth.auth", "must encode \"user:password\""))?;
        username = Some(user.to_string());
        password = Some(pass.to_string());
    }
    if username.is_some() && password.is_none() {
        return Err(CriError::invalid("auth.password", "must be set with auth.username"));
    }
    let creds = Credentials {
        username,
        password,
        auth: None,
        identity_token: some(&auth.identity_token),
        registry_token: some(&auth.registry_token),
    };
    Ok((creds != Credentials::default()).then_some(creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_decodes_to_user_and_password() {
        let auth = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            ..Default::default()
        };
        let c = credentials_from(&auth).unwrap().unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3:cret"));
    }

    #[test]
    fn empty_auth_is_anonymous() {
        assert!(credentials_from(&AuthConfig::default()).unwrap().is_none());
    }

    #[test]
    fn malformed_auth_names_the_field() {
        for auth in [
            AuthConfig {
                auth: "%%%".into(),
                ..Default::default()
            },
            AuthConfig {
                auth: base64::engine::general_purpose::STANDARD.encode("nocolon"),
                ..Default::default()
            },
            AuthConfig {
                username: "u".into(),
                ..Default::default()
            },
        ] {
            let err = credentials_from(&auth).unwrap_err();
            assert!(err.to_string().starts_with("auth."), "{err}");
        }
    }

    #[test]
    fn tokens_pass_through() {
        let auth = AuthConfig {
            registry_token: "tok".into(),
            identity_token: "id".into(),
            ..Default::default()
        };
        let c = credentials_from(&auth).unwrap().unwrap();
        assert_eq!(c.registry_token.as_deref(), Some("tok"));
        assert_eq!(c.identity_token.as_deref(), Some("id"));
    }
}
