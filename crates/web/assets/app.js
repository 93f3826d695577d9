// Progressive enhancement for Coffer's pages. Every page works without this
// file; it only adds: the service worker, QR scanning with the camera where
// the browser can read barcodes, and refreshing the payment code before it
// expires. No inline script, no style attributes (the CSP forbids both).
'use strict';

if ('serviceWorker' in navigator) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js').catch(() => {});
  });
}

// Camera scanning: only where BarcodeDetector reads QR codes. Otherwise the
// upload form (decoded on the server) is what the customer uses.
async function setUpCamera() {
  const section = document.getElementById('camera');
  if (!section || !('BarcodeDetector' in window) || !navigator.mediaDevices) return;
  let formats = [];
  try { formats = await window.BarcodeDetector.getSupportedFormats(); } catch (e) { return; }
  if (!formats.includes('qr_code')) return;
  section.hidden = false;
  const video = document.getElementById('camera-video');
  const start = document.getElementById('camera-start');
  const detector = new window.BarcodeDetector({ formats: ['qr_code'] });
  start.addEventListener('click', async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    } catch (e) {
      section.hidden = true;
      return;
    }
    video.srcObject = stream;
    await video.play();
    start.hidden = true;
    const tick = async () => {
      try {
        const codes = await detector.detect(video);
        if (codes.length > 0) {
          stream.getTracks().forEach((track) => track.stop());
          const form = document.getElementById('payload-form');
          const field = document.getElementById('payload');
          if (form && field) {
            field.value = codes[0].rawValue;
            form.submit();
            return;
          }
        }
      } catch (e) { /* keep looking */ }
      window.setTimeout(tick, 300);
    };
    tick();
  });
}

// The payment code: a fresh one every 50 s while the page is open (each
// code lives a minute and is single use).
function setUpPaymentCode() {
  const holder = document.getElementById('paycode');
  if (!holder) return;
  const refresh = async () => {
    try {
      const response = await fetch('/paycode/qr', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': holder.dataset.csrf },
      });
      if (response.ok) {
        const html = await response.text();
        const parsed = new DOMParser().parseFromString(html, 'text/html');
        holder.replaceChildren(...parsed.body.childNodes);
      }
    } catch (e) { /* offline: the button still works */ }
  };
  if (!holder.firstElementChild) refresh();
  window.setInterval(refresh, 50000);
}

document.addEventListener('DOMContentLoaded', () => {
  setUpCamera();
  setUpPaymentCode();
});
