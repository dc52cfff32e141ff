//! images, inspecti, rmi, imagefsinfo.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use super::cli::Format;
use super::output::{human_size, print_structured, print_table, short_id};
use super::{request, status_error};

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

pub struct ListStyle {
    pub quiet: bool,
    pub digests: bool,
    pub no_trunc: bool,
    pub output: Format,
}

pub async fn list(channel: Channel, timeout: Duration, filter: Option<String>, style: ListStyle) -> anyhow::Result<()> {
    let filter = filter.map(|f| ImageFilter { image: spec(&f) });
    let resp = ImageServiceClient::new(channel)
        .list_images(request(ListImagesRequest { filter }, timeout))
        .await
        .map_err(|s| status_error("ListImages", s))?
        .into_inner();
    if style.output != Format::Table {
        return print_structured(&resp, style.output);
    }
    if style.quiet {
        for image in &resp.images {
            println!("{}", image.id);
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for image in &resp.images {
        let id = if style.no_trunc {
            image.id.clone()
        } else {
            short_id(&image.id)
        };
        let digest = image
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d.to_string())
            .unwrap_or("<none>".into());
        let digest = if style.no_trunc || digest == "<none>" {
            digest
        } else {
            short_id(&digest)
        };
        let names: Vec<(String, String)> = if image.repo_tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r.to_string())
                .unwrap_or("<none>".into());
            vec![(repo, "<none>".into())]
        } else {
            image.repo_tags.iter().map(|t| split_tag(t)).collect()
        };
        for (repo, tag) in names {
            let mut row = vec![repo, tag];
            if style.digests {
                row.push(digest.clone());
            }
            row.push(id.clone());
            row.push(human_size(image.size));
            rows.push(row);
        }
    }
    let header: &[&str] = if style.digests {
        &["IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE"]
    } else {
        &["IMAGE", "TAG", "IMAGE ID", "SIZE"]
    };
    print_table(header, &rows);
    Ok(())
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); a port's colon is not a tag.
fn split_tag(name: &str) -> (String, String) {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (name[..slash + i].to_string(), name[slash + i + 1..].to_string()),
        None => (name.to_string(), "<none>".to_string()),
    }
}

pub async fn inspect(channel: Channel, timeout: Duration, images: &[String], format: Format) -> anyhow::Result<()> {
    let mut client = ImageServiceClient::new(channel);
    let mut missing = Vec::new();
    for image in images {
        let resp = client
            .image_status(request(
                ImageStatusRequest {
                    image: spec(image),
                    verbose: true,
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error("ImageStatus", s))?
            .into_inner();
        let Some(status) = resp.image else {
            missing.push(image.clone());
            continue;
        };
        let mut out = serde_json::Map::new();
        out.insert("status".into(), serde_json::to_value(&status)?);
        let info: BTreeMap<_, _> = resp.info.into_iter().collect();
        let info: serde_json::Map<_, _> = info
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v))))
            .collect();
        out.insert("info".into(), info.into());
        print_structured(&out, format)?;
    }
    if !missing.is_empty() {
        anyhow::bail!("no such image: {}", missing.join(", "));
    }
    Ok(())
}

pub async fn remove(channel: Channel, timeout: Duration, mut images: Vec<String>, all: bool) -> anyhow::Result<()> {
    let mut client = ImageServiceClient::new(channel);
    if all {
        let listed = client
            .list_images(request(ListImagesRequest { filter: None }, timeout))
            .await
            .map_err(|s| status_error("ListImages", s))?
            .into_inner();
        images.extend(listed.images.into_iter().map(|i| i.id));
    }
    if images.is_empty() {
        anyhow::bail!("name at least one image (or --all)");
    }
    let mut failed = 0;
    for image in images {
        let status = client
            .image_status(request(
                ImageStatusRequest {
                    image: spec(&image),
                    verbose: false,
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error("ImageStatus", s))?
            .into_inner();
        let Some(found) = status.image else {
            eprintln!("no such image {image}");
            failed += 1;
            continue;
        };
        match client
            .remove_image(request(RemoveImageRequest { image: spec(&found.id) }, timeout))
            .await
        {
            Ok(_) => {
                for name in found.repo_tags.iter().chain(&found.repo_digests) {
                    println!("Deleted: {name}");
                }
                if found.repo_tags.is_empty() && found.repo_digests.is_empty() {
                    println!("Deleted: {}", found.id);
                }
            }
            Err(s) => {
                eprintln!("{}", status_error(&format!("RemoveImage {image}"), s));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} image(s) not removed");
    }
    Ok(())
}

pub async fn fs_info(channel: Channel, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let resp = ImageServiceClient::new(channel)
        .image_fs_info(request(ImageFsInfoRequest {}, timeout))
        .await
        .map_err(|s| status_error("ImageFsInfo", s))?
        .into_inner();
    print_structured(&resp, format)
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(
            split_tag("127.0.0.1:5000/berth/busybox:latest"),
            ("127.0.0.1:5000/berth/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/berth/busybox"),
            ("127.0.0.1:5000/berth/busybox".into(), "<none>".into())
        );
    }
}
