//! Layer media types: which ones berth unpacks, and how to decompress them.
//!
//! The media type alone decides the decoder; content is never sniffed. Unknown
//! types are refused with [`ImagesError::UnsupportedMediaType`], and
//! non-distributable ("foreign") layers — whose bytes live at URLs outside the
//! registry — with [`ImagesError::NonDistributableLayer`].

use std::io::{self, BufReader, Read};

use oci_spec::image::MediaType;

use crate::{ImagesError, Result};

const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Classify a layer descriptor's media type. `digest` only names the layer
    /// in errors.
    pub fn from_media_type(media_type: &MediaType, digest: &str) -> Result<Compression> {
        let refused = || ImagesError::NonDistributableLayer {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
        };
        match media_type {
            MediaType::ImageLayer => Ok(Compression::None),
            MediaType::ImageLayerGzip => Ok(Compression::Gzip),
            MediaType::ImageLayerZstd => Ok(Compression::Zstd),
            MediaType::ImageLayerNonDistributable
            | MediaType::ImageLayerNonDistributableGzip
            | MediaType::ImageLayerNonDistributableZstd => Err(refused()),
            MediaType::Other(s) if s == DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
            MediaType::Other(s) if s == DOCKER_LAYER_TAR => Ok(Compression::None),
            MediaType::Other(s) if s == DOCKER_FOREIGN_LAYER => Err(refused()),
            other => Err(ImagesError::UnsupportedMediaType {
                media_type: other.to_string(),
                digest: digest.to_string(),
            }),
        }
    }

    /// Wrap `compressed` in the matching decoder.
    pub fn decoder<'a, R: Read + 'a>(self, compressed: R) -> io::Result<Box<dyn Read + 'a>> {
        let buffered = BufReader::with_capacity(128 * 1024, compressed);
        Ok(match self {
            Compression::None => Box::new(buffered),
            // Multi-member: some tools write a layer as several gzip members.
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn classifies_media_types() {
        let c = |s: &str| Compression::from_media_type(&MediaType::from(s), "sha256:x");
        assert_eq!(c("application/vnd.oci.image.layer.v1.tar").unwrap(), Compression::None);
        assert_eq!(
            c("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            c("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert_eq!(c(DOCKER_LAYER_GZIP).unwrap(), Compression::Gzip);
        assert_eq!(c(DOCKER_LAYER_TAR).unwrap(), Compression::None);
        assert!(matches!(
            c(DOCKER_FOREIGN_LAYER),
            Err(ImagesError::NonDistributableLayer { .. })
        ));
        assert!(matches!(
            c("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Err(ImagesError::NonDistributableLayer { .. })
        ));
        assert!(matches!(
            c("application/x-bzip2"),
            Err(ImagesError::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            c("application/vnd.oci.image.config.v1+json"),
            Err(ImagesError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn decoders_round_trip() {
        let data = b"hello layer".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for (c, bytes) in [
            (Compression::None, data.clone()),
            (Compression::Gzip, gz),
            (Compression::Zstd, zst),
        ] {
            let mut out = Vec::new();
            c.decoder(&bytes[..]).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{c:?}");
        }
    }
}
