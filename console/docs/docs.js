// The API reference at /docs: Swagger UI from this server (no CDN), on this server's
// OpenAPI document. "Authorize" takes a project API key (sk_live_...) for "Try it out";
// it is kept in this page's memory only.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
