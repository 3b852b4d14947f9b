//! Dovecot-style path templates (`%d/%n/Maildir`).

/// Expands Dovecot-style placeholders in a path template: `%u` address, `%n` local part,
/// `%d` domain, `%%` a percent sign. Unknown `%x` stays as it is.
pub fn expand_template(template: &str, address: &str) -> String {
    expand_template_home(template, address, None)
}

/// Like [`expand_template`], with `%h` the home directory when given.
pub fn expand_template_home(template: &str, address: &str, home: Option<&str>) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mut out = String::with_capacity(template.len() + address.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(address),
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some('h') => out.push_str(home.unwrap_or("%h")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand_template("/v/%d/%n/Maildir", "al@ex.org"),
            "/v/ex.org/al/Maildir"
        );
        assert_eq!(expand_template("%u %% %x", "a@b"), "a@b % %x");
        assert_eq!(
            expand_template_home("%h/.dovecot.sieve", "a@b", Some("/v/b/a")),
            "/v/b/a/.dovecot.sieve"
        );
        assert_eq!(expand_template("%h/x", "a@b"), "%h/x");
    }
}
