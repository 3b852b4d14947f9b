//! `addheader` and `deleteheader` (RFC 5293), and the header as the edits so far left
//! it, which every test and `vacation` look at (RFC 5293 §7).

use super::{Interp, Result};
use crate::date::FieldIndex;
use crate::editheader::{self, FieldId};
use crate::limits::{MAX_ADDED_HEADER_BYTES, MAX_ADDHEADER_VALUE, MAX_HEADER_EDITS};
use crate::matching::MatchSpec;
use crate::variables::Str;

impl Interp<'_> {
    /// Every value of field `name` as the edits so far left the header.
    pub(super) fn fields(&mut self, name: &str) -> Result<Vec<String>> {
        Ok(self.field_view(name)?.into_iter().map(|(_, v)| v).collect())
    }

    fn field_view(&mut self, name: &str) -> Result<Vec<(FieldId, String)>> {
        let original = self.ctx.message.header(name);
        // Replaying the edits costs about (edits × fields).
        self.spend(self.edits.len() * (original.len() + 1))?;
        Ok(self.edits.view(name, original))
    }

    /// One more edit command: an error past [`MAX_HEADER_EDITS`].
    fn count_edit(&mut self, what: &str) -> Result<()> {
        self.edit_commands += 1;
        if self.edit_commands > MAX_HEADER_EDITS {
            return Err(self.fail(format!(
                "{what}: too many header edits (limit {MAX_HEADER_EDITS})"
            )));
        }
        Ok(())
    }

    /// The field name, expanded and checked (an invalid name from a variable is an error,
    /// RFC 5293 §4/§5); `None` for a protected field (the change is silently ignored,
    /// RFC 5293 §6, with a warning for the log).
    fn edit_name(&mut self, name: &Str, what: &str) -> Result<Option<String>> {
        let name = self.expand(name)?;
        if !editheader::valid_field_name(&name) {
            return Err(self.fail(format!("{what}: invalid field name \"{name}\"")));
        }
        if editheader::protected(&name) {
            self.warnings.push(format!(
                "{what}: changes to \"{name}\" are not allowed; ignored"
            ));
            return Ok(None);
        }
        Ok(Some(name))
    }

    pub(super) fn addheader(&mut self, name: &Str, value: &Str, last: bool) -> Result<()> {
        self.count_edit("addheader")?;
        let Some(name) = self.edit_name(name, "addheader")? else {
            return Ok(());
        };
        let value = self.expand(value)?;
        if value.len() > MAX_ADDHEADER_VALUE {
            return Err(self.fail(format!(
                "addheader: value longer than {MAX_ADDHEADER_VALUE} bytes"
            )));
        }
        let value = editheader::clean_value(&value).map_err(|m| self.fail(m))?;
        self.spend(value.len() * 2 + name.len())?;
        self.added_bytes += self.edits.add(&name, &value, last);
        if self.added_bytes > MAX_ADDED_HEADER_BYTES {
            return Err(self.fail(format!(
                "addheader: added fields exceed {MAX_ADDED_HEADER_BYTES} bytes"
            )));
        }
        Ok(())
    }

    pub(super) fn deleteheader(
        &mut self,
        spec: &MatchSpec,
        index: Option<FieldIndex>,
        name: &Str,
        keys: Option<&[Str]>,
    ) -> Result<()> {
        self.count_edit("deleteheader")?;
        let Some(name) = self.edit_name(name, "deleteheader")? else {
            return Ok(());
        };
        let mut fields = self.field_view(&name)?;
        if let Some(i) = index {
            // Counted before the value patterns are matched (RFC 5293 §5).
            let n = usize::try_from(i.n).unwrap_or(usize::MAX);
            if n == 0 || n > fields.len() {
                return Ok(());
            }
            let at = if i.last { fields.len() - n } else { n - 1 };
            fields = vec![fields.swap_remove(at)];
        }
        let keys = match keys {
            Some(k) => Some(self.expand_all(k)?),
            None => None,
        };
        for (id, value) in fields {
            let hit = match &keys {
                None => true,
                Some(k) => self.value_matches(spec, value.trim(), k)?,
            };
            if hit {
                self.edits.delete(id);
            }
        }
        Ok(())
    }
}
