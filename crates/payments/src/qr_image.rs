//! QR images: payloads rendered as PNG and SVG (`qrcode`), and photos or
//! screenshots decoded back to their payload server-side (`rqrr`), for
//! customers whose camera is unavailable. Decoded text is only ever handed
//! to the EMVCo parser, which checks it like any scanned payload.

use qrcode::{EcLevel, QrCode};

/// Uploaded images larger than this are refused before decoding.
pub const UPLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Images are downscaled to at most this many pixels a side before the
/// search for a code: a phone photo is 12 megapixels, a code needs far fewer.
const DECODE_SIDE_PIXELS_MAX: u32 = 1_600;
/// Pixels per module of a rendered PNG; with the quiet zone a typical
/// payload makes a code of about 300 pixels.
const PNG_MODULE_PIXELS: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrImageError {
    #[error("the payload does not fit in a QR code")]
    TooLong,
    #[error("the image could not be read: {0}")]
    Unreadable(String),
    #[error("no QR code was found in the image")]
    NoCode,
    #[error("the image is larger than {UPLOAD_BYTES_MAX} bytes")]
    TooLarge,
}

impl QrImageError {
    pub fn code(&self) -> &'static str {
        match self {
            QrImageError::TooLong => "qr_too_long",
            QrImageError::Unreadable(_) => "image_unreadable",
            QrImageError::NoCode => "qr_not_found",
            QrImageError::TooLarge => "image_too_large",
        }
    }
}

fn code(payload: &str) -> Result<QrCode, QrImageError> {
    // Level M (15% recovery): what wallets print at tills; survives a smudge.
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
        .map_err(|_| QrImageError::TooLong)
}

/// The payload as a PNG image.
pub fn png(payload: &str) -> Result<Vec<u8>, QrImageError> {
    let image = code(payload)?
        .render::<image::Luma<u8>>()
        .module_dimensions(PNG_MODULE_PIXELS, PNG_MODULE_PIXELS)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| QrImageError::Unreadable(e.to_string()))?;
    Ok(out.into_inner())
}

/// The payload as an SVG document.
pub fn svg(payload: &str) -> Result<String, QrImageError> {
    Ok(code(payload)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build())
}

/// The text of the first QR code found in a PNG or JPEG image.
pub fn decode(bytes: &[u8]) -> Result<String, QrImageError> {
    if bytes.len() > UPLOAD_BYTES_MAX {
        return Err(QrImageError::TooLarge);
    }
    let format = image::guess_format(bytes).map_err(|e| QrImageError::Unreadable(e.to_string()))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(QrImageError::Unreadable("only PNG and JPEG images".into()));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    // Bounds the memory a hostile header can ask for (a "decompression bomb").
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(8_000);
    limits.max_image_height = Some(8_000);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| QrImageError::Unreadable(e.to_string()))?;
    let decoded = if decoded.width().max(decoded.height()) > DECODE_SIDE_PIXELS_MAX {
        decoded.resize(
            DECODE_SIDE_PIXELS_MAX,
            DECODE_SIDE_PIXELS_MAX,
            image::imageops::FilterType::Triangle,
        )
    } else {
        decoded
    };
    let mut prepared = rqrr::PreparedImage::prepare(decoded.to_luma8());
    for grid in prepared.detect_grids() {
        if let Ok((_, content)) = grid.decode() {
            return Ok(content);
        }
    }
    Err(QrImageError::NoCode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emv::{Initiation, MerchantQr};

    #[test]
    fn a_rendered_code_decodes_and_parses_back() {
        let qr = MerchantQr {
            initiation: Initiation::Dynamic,
            merchant_id: "mer_0123456789abcdef".into(),
            mcc: "5814".into(),
            currency: "CNY".into(),
            amount: Some(3_800),
            country: "CN".into(),
            name: "Lotus Coffee".into(),
            city: "Shanghai".into(),
            bill_number: Some("A-1001".into()),
            reference: Some("mpy_00ff".into()),
        };
        let payload = qr.encode().expect("encode");
        let image = png(&payload).expect("png");
        assert_eq!(&image[1..4], b"PNG");
        let text = decode(&image).expect("decode");
        assert_eq!(text, payload);
        assert_eq!(MerchantQr::parse(&text), Ok(qr));
        let drawing = svg(&payload).expect("svg");
        assert!(drawing.contains("<svg"));
    }

    #[test]
    fn images_without_a_code_or_not_images_are_refused() {
        let blank = image::GrayImage::from_pixel(200, 200, image::Luma([255u8]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        blank
            .write_to(&mut bytes, image::ImageFormat::Png)
            .expect("png");
        assert_eq!(decode(&bytes.into_inner()), Err(QrImageError::NoCode));
        assert!(matches!(
            decode(b"not an image"),
            Err(QrImageError::Unreadable(_))
        ));
        assert_eq!(
            decode(&vec![0u8; UPLOAD_BYTES_MAX + 1]),
            Err(QrImageError::TooLarge)
        );
    }
}
