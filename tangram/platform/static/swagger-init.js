// Starts Swagger UI on /api/docs. Kept in a file (not inline) so the page
// runs under a Content-Security-Policy of script-src 'self'.
(function () {
  var holder = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: holder.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    persistAuthorization: true,
    // Swagger UI would otherwise load a badge from validator.swagger.io on any
    // host but localhost: offline installations have no such server (and the
    // CSP refuses it).
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
