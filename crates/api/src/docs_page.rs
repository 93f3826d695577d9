//! `/docs`: the OpenAPI document rendered as one HTML page by the server, so
//! that the reference works offline, without script and with no external
//! asset. It walks the document's JSON form, the same text `/openapi.json`
//! serves, so the two cannot disagree.

use std::fmt::Write;

use serde_json::{Map, Value};

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:1em 2em;color:#1d232a}\
code{font:13px ui-monospace,monospace;background:#f2f4f7;padding:0 .25em;border-radius:3px}\
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}th,td{border:1px solid #d8dde3;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.op{border-top:2px solid #d8dde3;padding-top:.5em;margin-top:2em}\
.method{font:bold 13px ui-monospace,monospace;padding:.15em .5em;border-radius:3px;color:#fff;background:#4a6fa5}\
.post{background:#2f8a4c}pre code{display:block;padding:.5em;overflow-x:auto}.muted{color:#5b6670}nav ul{columns:2}h4{margin-bottom:.2em}";

/// The whole page. `document` is the OpenAPI document as JSON.
pub fn render(openapi: &utoipa::openapi::OpenApi) -> String {
    let document = serde_json::to_value(openapi).unwrap_or(Value::Null);
    Page {
        document: &document,
    }
    .render()
}

struct Page<'a> {
    document: &'a Value,
}

impl Page<'_> {
    fn render(&self) -> String {
        let info = &self.document["info"];
        let title = text(&info["title"]);
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} reference</title><style>{STYLE}</style></head><body>\
             <h1>{} <small class=\"muted\">{}</small></h1>\
             <p class=\"muted\">OpenAPI {}: <a href=\"/openapi.json\">/openapi.json</a></p>",
            escape(title),
            escape(title),
            escape(text(&info["version"])),
            escape(text(&self.document["openapi"])),
        );
        html.push_str(&markdown(text(&info["description"])));
        self.security_schemes(&mut html);
        let operations = self.operations();
        self.contents(&mut html, &operations);
        for tag in self.tags() {
            let _ = write!(
                html,
                "<h2 id=\"tag-{}\">{}</h2>",
                attribute(&tag.0),
                escape(&tag.0)
            );
            html.push_str(&markdown(&tag.1));
            for operation in operations.iter().filter(|o| o.tag == tag.0) {
                self.operation(&mut html, operation);
            }
        }
        self.schemas(&mut html);
        html.push_str("</body></html>\n");
        html
    }

    /// (name, description) of each tag, in the document's order.
    fn tags(&self) -> Vec<(String, String)> {
        array(&self.document["tags"])
            .iter()
            .map(|t| {
                (
                    text(&t["name"]).to_string(),
                    text(&t["description"]).to_string(),
                )
            })
            .collect()
    }

    fn operations(&self) -> Vec<Operation<'_>> {
        let mut found = Vec::new();
        for (path, item) in object(&self.document["paths"]) {
            for method in [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ] {
                if let Some(operation) = item.get(method) {
                    found.push(Operation {
                        method,
                        path,
                        tag: array(&operation["tags"])
                            .first()
                            .map_or("", text)
                            .to_string(),
                        value: operation,
                    });
                }
            }
        }
        found
    }

    fn contents(&self, html: &mut String, operations: &[Operation<'_>]) {
        html.push_str("<nav><h2>Contents</h2><ul>");
        for operation in operations {
            let _ = write!(
                html,
                "<li><a href=\"#{}\"><span class=\"method {}\">{}</span> <code>{}</code></a> {}</li>",
                operation.anchor(),
                operation.method,
                operation.method.to_uppercase(),
                escape(operation.path),
                escape(text(&operation.value["summary"])),
            );
        }
        html.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>");
    }

    fn security_schemes(&self, html: &mut String) {
        let schemes = object(&self.document["components"]["securitySchemes"]);
        if schemes.is_empty() {
            return;
        }
        html.push_str("<h2>Authentication</h2>");
        for (name, scheme) in schemes {
            let _ = write!(
                html,
                "<p><strong>{}</strong> ({} {}): ",
                escape(name),
                escape(text(&scheme["type"])),
                escape(text(&scheme["scheme"]))
            );
            html.push_str(&inline(&escape(text(&scheme["description"]))));
            html.push_str("</p>");
        }
    }

    fn operation(&self, html: &mut String, operation: &Operation<'_>) {
        let value = operation.value;
        let _ = write!(
            html,
            "<section class=\"op\" id=\"{}\"><h3><span class=\"method {}\">{}</span> <code>{}</code> {}</h3>",
            operation.anchor(),
            operation.method,
            operation.method.to_uppercase(),
            escape(operation.path),
            escape(text(&value["summary"])),
        );
        html.push_str(&markdown(text(&value["description"])));
        let scopes: Vec<String> = array(&value["security"])
            .iter()
            .flat_map(|requirement| object(requirement).values())
            .flat_map(array)
            .map(|scope| format!("<code>{}</code>", escape(text(scope))))
            .collect();
        if scopes.is_empty() {
            html.push_str("<p class=\"muted\">No authentication.</p>");
        } else {
            let _ = write!(
                html,
                "<p>Needs an API key with the scope {}.</p>",
                scopes.join(", ")
            );
        }
        self.parameters(html, array(&value["parameters"]));
        if let Some(body) = value.get("requestBody") {
            html.push_str("<h4>Request body</h4>");
            for (content_type, content) in object(&body["content"]) {
                let _ = write!(
                    html,
                    "<p><code>{}</code>{}: {}</p>",
                    escape(content_type),
                    if body["required"] == Value::Bool(true) {
                        ", required"
                    } else {
                        ""
                    },
                    self.type_of(&content["schema"])
                );
                if let Some(schema) = self.resolve(&content["schema"], "schemas") {
                    self.properties(html, schema);
                    if let Some(example) = array(&schema["examples"]).first() {
                        let pretty = serde_json::to_string_pretty(example).unwrap_or_default();
                        let _ = write!(
                            html,
                            "<p>Example:</p><pre><code>{}</code></pre>",
                            escape(&pretty)
                        );
                    }
                }
            }
        }
        self.responses(html, &value["responses"]);
        html.push_str("</section>");
    }

    fn parameters(&self, html: &mut String, parameters: &[Value]) {
        if parameters.is_empty() {
            return;
        }
        html.push_str(
            "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>",
        );
        for parameter in parameters {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(&parameter["name"])),
                escape(text(&parameter["in"])),
                self.type_of(&parameter["schema"]),
                yes_no(parameter["required"] == Value::Bool(true)),
                inline(&escape(text(&parameter["description"]))),
            );
        }
        html.push_str("</table>");
    }

    fn responses(&self, html: &mut String, responses: &Value) {
        html.push_str(
            "<h4>Responses</h4><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
        );
        for (status, response) in object(responses) {
            let response = self.resolve(response, "responses").unwrap_or(response);
            let bodies: Vec<String> = object(&response["content"])
                .iter()
                .map(|(content_type, content)| {
                    format!(
                        "<code>{}</code> {}",
                        escape(content_type),
                        self.type_of(&content["schema"])
                    )
                })
                .collect();
            let headers: Vec<String> = object(&response["headers"])
                .keys()
                .map(|name| format!("<br>Header <code>{}</code>", escape(name)))
                .collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                escape(status),
                inline(&escape(text(&response["description"]))),
                headers.concat(),
                bodies.join("<br>"),
            );
        }
        html.push_str("</table>");
    }

    fn schemas(&self, html: &mut String) {
        html.push_str("<h2 id=\"schemas\">Schemas</h2>");
        for (name, schema) in object(&self.document["components"]["schemas"]) {
            let _ = write!(
                html,
                "<section id=\"schema-{}\"><h3>{}</h3>",
                attribute(name),
                escape(name)
            );
            html.push_str(&markdown(text(&schema["description"])));
            self.properties(html, schema);
            html.push_str("</section>");
        }
    }

    /// An object schema's fields as a table.
    fn properties(&self, html: &mut String, schema: &Value) {
        let properties = object(&schema["properties"]);
        if properties.is_empty() {
            return;
        }
        let required: Vec<&str> = array(&schema["required"]).iter().map(text).collect();
        html.push_str(
            "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
        );
        for (name, property) in properties {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                self.type_of(property),
                yes_no(required.contains(&name.as_str())),
                inline(&escape(text(&property["description"]))),
            );
        }
        html.push_str("</table>");
        if schema["additionalProperties"] == Value::Bool(false) {
            html.push_str("<p class=\"muted\">No other field is accepted.</p>");
        }
    }

    /// The schema a `$ref` of `#/components/{kind}/Name` points to.
    fn resolve<'v>(&'v self, value: &'v Value, kind: &str) -> Option<&'v Value> {
        let reference = value.get("$ref")?.as_str()?;
        let name = reference.strip_prefix(&format!("#/components/{kind}/"))?;
        self.document["components"][kind].get(name)
    }

    /// A short HTML description of a schema: its type, format, values and bounds.
    fn type_of(&self, schema: &Value) -> String {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            return format!(
                "<a href=\"#schema-{}\">{}</a>",
                attribute(name),
                escape(name)
            );
        }
        if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
            let parts: Vec<String> = choices.iter().map(|c| self.type_of(c)).collect();
            return parts.join(" or ");
        }
        let mut kind = match &schema["type"] {
            Value::String(one) => escape(one),
            Value::Array(many) => many
                .iter()
                .map(|t| escape(text(t)))
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "any".to_string(),
        };
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            let _ = write!(kind, " ({})", escape(format));
        }
        if let Some(items) = schema.get("items") {
            let _ = write!(kind, " of {}", self.type_of(items));
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let _ = write!(kind, " of string to {}", self.type_of(values));
        }
        let mut notes = Vec::new();
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let listed: Vec<String> = values
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect();
            notes.push(format!("one of {}", listed.join(", ")));
        }
        for (key, label) in [
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minimum", "min"),
            ("maximum", "max"),
            ("minItems", "min items"),
            ("maxItems", "max items"),
            ("maxProperties", "max entries"),
        ] {
            if let Some(bound) = schema.get(key) {
                notes.push(format!("{label} {}", escape(&bound.to_string())));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            notes.push(format!("pattern <code>{}</code>", escape(pattern)));
        }
        if let Some(names) = schema.get("propertyNames") {
            notes.push(format!("keys: {}", self.type_of(names)));
        }
        if let Some(default) = schema.get("default") {
            notes.push(format!(
                "default <code>{}</code>",
                escape(&default.to_string())
            ));
        }
        if notes.is_empty() {
            kind
        } else {
            format!(
                "{kind}<br><span class=\"muted\">{}</span>",
                notes.join("; ")
            )
        }
    }
}

struct Operation<'a> {
    method: &'static str,
    path: &'a str,
    tag: String,
    value: &'a Value,
}

impl Operation<'_> {
    fn anchor(&self) -> String {
        format!("op-{}", attribute(text(&self.value["operationId"])))
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn object(value: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    value
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

/// Text safe between tags and inside double-quoted attributes (the page
/// uses no other kind).
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// An id-safe token for anchors: anything but `[A-Za-z0-9_-]` becomes `-`.
fn attribute(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The little Markdown the descriptions use: paragraphs, `- ` lists,
/// `code` and **bold**. Escapes first, so no input becomes markup.
fn markdown(raw: &str) -> String {
    let mut html = String::new();
    for block in raw.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let lines: Vec<&str> = block.lines().collect();
        if lines.iter().all(|l| l.starts_with("- ")) {
            html.push_str("<ul>");
            for line in lines {
                let _ = write!(html, "<li>{}</li>", inline(&escape(&line[2..])));
            }
            html.push_str("</ul>");
        } else {
            let _ = write!(html, "<p>{}</p>", inline(&escape(block)));
        }
    }
    html
}

/// `code` and **bold** spans in already-escaped text.
fn inline(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    for (index, part) in escaped.split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            for (inner, piece) in part.split("**").enumerate() {
                if inner % 2 == 1 {
                    let _ = write!(out, "<strong>{piece}</strong>");
                } else {
                    out.push_str(piece);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_before_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;'"
        );
        assert_eq!(
            markdown("- `<b>` and **bold**\n- two"),
            "<ul><li><code>&lt;b&gt;</code> and <strong>bold</strong></li><li>two</li></ul>"
        );
        assert_eq!(attribute("a b/\"c\""), "a-b--c-");
    }
}
