//! The XML of the Query protocol (IAM, STS), written by hand: responses are small trees of text,
//! lists and structures, so escaping five characters is all a writer needs (no crate earns its
//! place here).

use kms_core::identity::Value;

/// `text` as XML character data: `&`, `<`, `>`, `"` and `'` escaped, a carriage return as `&#xD;`
/// (a parser would turn a literal one into a line feed). A character XML 1.0 cannot carry at all,
/// even as a reference (a control character other than tab and line ends, U+FFFE, U+FFFF), becomes
/// U+FFFD, visibly: input is checked so that nothing stored holds one, but an error message may echo
/// a refused value, and one such character would make the whole answer unreadable.
pub(crate) fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push(char::REPLACEMENT_CHARACTER),
        }
    }
}

/// XML 1.0's `Char` production: `#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
/// [#x10000-#x10FFFF]` (a Rust `char` is never a surrogate).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..)
}

fn element(name: &str, v: &Value, out: &mut String) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    match v {
        Value::Text(t) => escape(t, out),
        Value::List(items) => {
            for item in items {
                element("member", item, out);
            }
        }
        Value::Struct(members) => {
            for (n, m) in members {
                element(n, m, out);
            }
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// `<ActionResponse xmlns=…><ActionResult>…</ActionResult><ResponseMetadata><RequestId>…`.
pub(crate) fn response(
    action: &str,
    namespace: &str,
    result: Option<&Value>,
    request_id: &str,
) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(&format!("<{action}Response xmlns=\"{namespace}\">"));
    if let Some(r) = result {
        element(&format!("{action}Result"), r, &mut out);
    }
    out.push_str("<ResponseMetadata><RequestId>");
    escape(request_id, &mut out);
    out.push_str(&format!(
        "</RequestId></ResponseMetadata></{action}Response>"
    ));
    out
}

/// `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error><RequestId>…`.
pub(crate) fn error(
    namespace: &str,
    sender: bool,
    code: &str,
    message: &str,
    request_id: &str,
) -> String {
    let mut out = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{}</Type><Code>",
        if sender { "Sender" } else { "Receiver" }
    );
    escape(code, &mut out);
    out.push_str("</Code><Message>");
    escape(message, &mut out);
    out.push_str("</Message></Error><RequestId>");
    escape(request_id, &mut out);
    out.push_str("</RequestId></ErrorResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_botocore_shapes() {
        let v = Value::Struct(vec![
            (
                "Users",
                Value::List(vec![Value::Struct(vec![(
                    "UserName",
                    Value::Text("a<&>\"'".into()),
                )])]),
            ),
            ("IsTruncated", Value::Text("false".into())),
        ]);
        assert_eq!(
            response("ListUsers", "ns", Some(&v), "r1"),
            "<ListUsersResponse xmlns=\"ns\"><ListUsersResult><Users><member><UserName>a&lt;&amp;&gt;&quot;&apos;\
             </UserName></member></Users><IsTruncated>false</IsTruncated></ListUsersResult><ResponseMetadata>\
             <RequestId>r1</RequestId></ResponseMetadata></ListUsersResponse>"
        );
        assert_eq!(
            response("DeleteUser", "ns", None, "r2"),
            "<DeleteUserResponse xmlns=\"ns\"><ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata>\
             </DeleteUserResponse>"
        );
        assert_eq!(
            error("ns", true, "NoSuchEntity", "no \u{1}user", "r3"),
            "<ErrorResponse xmlns=\"ns\"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no \u{fffd}user\
             </Message></Error><RequestId>r3</RequestId></ErrorResponse>"
        );
    }

    #[test]
    fn escapes_only_to_xml_chars() {
        let mut out = String::new();
        escape(
            "a\u{0}\u{8}\u{b}\u{c}\u{1f}\t\n\r\u{7f}\u{d7ff}\u{e000}\u{fffd}\u{fffe}\u{ffff}\u{10000}\u{10ffff}",
            &mut out,
        );
        assert_eq!(
            out,
            "a\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\t\n&#xD;\u{7f}\u{d7ff}\u{e000}\u{fffd}\u{fffd}\u{fffd}\
             \u{10000}\u{10ffff}"
        );
        // Whatever the text, the output holds XML characters only.
        assert!((0..=0x10ffff).filter_map(char::from_u32).all(|c| {
            let mut one = String::new();
            escape(&c.to_string(), &mut one);
            one.chars().all(is_xml_char)
        }));
    }
}
