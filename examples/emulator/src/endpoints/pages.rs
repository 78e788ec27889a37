//! The emulator's HTML frame, shared by the login form, the error pages and the
//! maintenance page of the `html` fault.

// Escapes both quotes as well as `&`, `<` and `>`, so the one function serves element content
// and attribute values alike.
use html_escape::encode_quoted_attribute;

use crate::http::Reply;

/// The page the `html` fault answers with where JSON was expected.
pub(super) fn maintenance_page() -> String {
    page("ClaveÚnica — Mantención", "<h1>Servicio en mantención</h1>\n<p>Vuelva a intentar más tarde.</p>")
}

const STYLE: &str = "body{font-family:Roboto,Arial,sans-serif;background:#eef1f5;margin:0;color:#222}\
header{background:#0f69b4;color:#fff;padding:14px 24px;font-size:20px}\
header b{color:#fff}header span{font-size:13px;margin-left:12px;opacity:.85}\
main{max-width:420px;margin:40px auto;background:#fff;padding:28px 32px;border-radius:6px;box-shadow:0 1px 4px rgba(0,0,0,.15)}\
label{display:block;margin-top:14px;font-weight:bold}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:9px;margin-top:4px;border:1px solid #aaa;border-radius:4px;font-size:16px}\
.buttons{margin-top:22px;display:flex;gap:10px}\
button{padding:10px 18px;border:0;border-radius:4px;font-size:15px;cursor:pointer}\
.primary{background:#0f69b4;color:#fff}.secondary{background:#ddd}\
.error{background:#fde8e8;color:#a40000;padding:10px;border-radius:4px}\
.help{margin-top:26px;font-size:13px;color:#555;border-top:1px solid #ddd;padding-top:12px}\
code{background:#f3f3f3;padding:1px 4px}";

pub(super) fn page(title: &str, content: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
<header><b>Clave</b>Única<span>Emulador para desarrollo — no es el servicio real</span></header>\n\
<main>\n{content}\n</main>\n</body>\n</html>\n",
        title = encode_quoted_attribute(title),
    )
}

pub(super) fn error_page(status: u16, message: &str) -> Reply {
    Reply::html(
        status,
        page("ClaveÚnica — Emulador", &format!("<p class=\"error\">{}</p>", encode_quoted_attribute(message))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_specials() {
        let html = page(r#"<a href="x">'Ñ' & co</a>"#, "");
        assert!(html.contains("<title>&lt;a href=&quot;x&quot;&gt;&#x27;Ñ&#x27; &amp; co&lt;/a&gt;</title>"));
    }
}
