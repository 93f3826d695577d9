// Coffer's service worker: caches this build's static assets only. Pages
// (balances, history, personal data) always come from the network and are
// never stored here.
const VERSION = 'coffer-__VERSION__';
const ASSETS = "__ASSETS__";

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(ASSETS)));
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys().then((names) =>
      Promise.all(names.filter((name) => name !== VERSION).map((name) => caches.delete(name))),
    ),
  );
  self.clients.claim();
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (!url.pathname.startsWith('/assets/')) return; // pages: network only
  event.respondWith(
    caches.match(event.request).then((hit) => hit || fetch(event.request)),
  );
});
