// /docs: Swagger UI (its files come from the fastapi-offline package, served by the API) on this API's
// description. A file of its own, not an inline script, so the page's Content-Security-Policy holds.

window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
});
