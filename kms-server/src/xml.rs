//! The XML of the Query protocol (IAM, STS), written by hand: responses are small trees of text,
//! lists and structures, so escaping five characters is all a writer needs (no crate earns its
//! place here).

use kms_core::identity::Value;
use zeroize::Zeroizing;

/// `text` as XML character data: `&`, `<`, `>`, `"` and `'` escaped, a carriage return as `&#xD;`
/// (a parser would turn a literal one into a line feed). A character XML 1.0 cannot carry at all,
/// even as a reference (a control character other than tab and line ends, U+FFFE, U+FFFF), becomes
/// U+FFFD, visibly: input is checked so that nothing stored holds one, but an error message may echo
/// a refused value, and one such character would make the whole answer unreadable.
pub(crate) fn escape(text: &str, out: &mut impl Sink) {
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

/// Where XML is written: a `String`, or a [`Count`] of the bytes it would take.
pub(crate) trait Sink {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl Sink for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// The length of what would be written.
#[derive(Default)]
struct Count(usize);

impl Sink for Count {
    fn push_str(&mut self, s: &str) {
        self.0 += s.len();
    }
    fn push(&mut self, c: char) {
        self.0 += c.len_utf8();
    }
}

fn element(name: &str, v: &Value, out: &mut impl Sink) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    match v {
        Value::Text(t) => escape(t, out),
        // Secrets are base64 or base64url text; one that were not UTF-8 is written as U+FFFDs.
        Value::Secret(b) => escape(&String::from_utf8_lossy(b.expose()), out),
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

/// `<ActionResponse xmlns=…><ActionResult>…</ActionResult><ResponseMetadata><RequestId>…`, in a
/// buffer zeroized when dropped and allocated once at its final size (measured first), so a secret
/// in the response (CreateAccessKey's, AssumeRole's) leaves no copy behind in freed memory.
pub(crate) fn response(
    action: &str,
    namespace: &str,
    result: Option<&Value>,
    request_id: &str,
) -> Zeroizing<String> {
    let mut count = Count::default();
    write_response(action, namespace, result, request_id, &mut count);
    let mut out = Zeroizing::new(String::with_capacity(count.0));
    write_response(action, namespace, result, request_id, &mut *out);
    debug_assert_eq!(out.len(), count.0);
    out
}

fn write_response(
    action: &str,
    namespace: &str,
    result: Option<&Value>,
    request_id: &str,
    out: &mut impl Sink,
) {
    out.push_str(&format!("<{action}Response xmlns=\"{namespace}\">"));
    if let Some(r) = result {
        element(&format!("{action}Result"), r, out);
    }
    out.push_str("<ResponseMetadata><RequestId>");
    escape(request_id, out);
    out.push_str(&format!(
        "</RequestId></ResponseMetadata></{action}Response>"
    ));
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
            response("ListUsers", "ns", Some(&v), "r1").as_str(),
            "<ListUsersResponse xmlns=\"ns\"><ListUsersResult><Users><member><UserName>a&lt;&amp;&gt;&quot;&apos;\
             </UserName></member></Users><IsTruncated>false</IsTruncated></ListUsersResult><ResponseMetadata>\
             <RequestId>r1</RequestId></ResponseMetadata></ListUsersResponse>"
        );
        assert_eq!(
            response("DeleteUser", "ns", None, "r2").as_str(),
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

    #[test]
    fn a_secret_is_written_into_a_buffer_of_its_exact_size_and_never_debug_printed() {
        let v = Value::Struct(vec![(
            "Credentials",
            Value::Struct(vec![
                ("AccessKeyId", Value::Text("ASIAEXAMPLE".into())),
                (
                    "SecretAccessKey",
                    Value::Secret(kms_core::SecretBytes::new(
                        b"wJalr/K7MDENG+bPxRfiCY".to_vec(),
                    )),
                ),
            ]),
        )]);
        let out = response("AssumeRole", "ns", Some(&v), "r3");
        assert!(out.contains("<SecretAccessKey>wJalr/K7MDENG+bPxRfiCY</SecretAccessKey>"));
        assert_eq!(
            out.capacity(),
            out.len(),
            "allocated once, at its final size"
        );
        assert!(!format!("{v:?}").contains("wJalr"));
    }
}
