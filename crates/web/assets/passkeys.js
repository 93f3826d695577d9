// Adding a passkey (see pages/passkeys.rs): the server's options go to
// navigator.credentials.create(), the authenticator's answer comes back.
// WebAuthn speaks ArrayBuffers, the API base64url: convert both ways.
'use strict';

function fromBase64url(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
}

function toBase64url(buffer) {
  let binary = '';
  new Uint8Array(buffer).forEach((b) => { binary += String.fromCharCode(b); });
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function creationOptions(options) {
  const publicKey = Object.assign({}, options.publicKey);
  publicKey.challenge = fromBase64url(publicKey.challenge);
  publicKey.user = Object.assign({}, publicKey.user, { id: fromBase64url(publicKey.user.id) });
  publicKey.excludeCredentials = (publicKey.excludeCredentials || []).map(
    (c) => Object.assign({}, c, { id: fromBase64url(c.id) }),
  );
  return { publicKey };
}

function credentialJson(credential) {
  const response = {
    attestationObject: toBase64url(credential.response.attestationObject),
    clientDataJSON: toBase64url(credential.response.clientDataJSON),
  };
  if (credential.response.getTransports) {
    response.transports = credential.response.getTransports();
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response,
    extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
  };
}

function setUpPasskeys() {
  const holder = document.getElementById('passkey-add');
  if (!holder || !window.PublicKeyCredential || !navigator.credentials) return;
  holder.hidden = false;
  const unsupported = document.getElementById('passkey-unsupported');
  if (unsupported) unsupported.hidden = true;
  const button = document.getElementById('passkey-button');
  const error = document.getElementById('passkey-error');
  const post = (path, body) => fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': holder.dataset.csrf, 'Content-Type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
  button.addEventListener('click', async () => {
    button.disabled = true;
    error.hidden = true;
    try {
      const started = await post('/me/passkeys/start', { step_up_challenge_id: holder.dataset.challenge });
      if (!started.ok) throw new Error('start');
      const ceremony = await started.json();
      const credential = await navigator.credentials.create(creationOptions(ceremony.options));
      const name = document.getElementById('passkey_name').value;
      const finished = await post(
        '/me/passkeys/' + encodeURIComponent(ceremony.ceremony_id) + '/finish',
        { name, credential: credentialJson(credential) },
      );
      if (!finished.ok) throw new Error('finish');
      window.location.reload();
    } catch (e) {
      error.textContent = holder.dataset.failed;
      error.hidden = false;
      button.disabled = false;
    }
  });
}

document.addEventListener('DOMContentLoaded', setUpPasskeys);
