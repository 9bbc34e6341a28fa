//! What a provider gives Keyroll to bill its own consumers through its own Stripe account: a
//! restricted key, each consumer's Stripe customer, and per API the meter event its
//! verifications are reported to.

/// A Stripe customer id (`cus_…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeCustomerId(String);

impl StripeCustomerId {
    /// # Errors
    /// Anything but `cus_` followed by 1 to 251 letters, digits or underscores.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let rest = s.strip_prefix("cus_").ok_or("must be a Stripe customer id (cus_…)")?;
        if rest.is_empty() || s.len() > 255 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("must be a Stripe customer id: cus_ then letters, digits or _ (at most 255 characters)");
        }
        Ok(Self(s.to_owned()))
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The `event_name` of a Stripe Billing Meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEventName(String);

impl MeterEventName {
    /// # Errors
    /// Anything but 1 to 100 letters, digits, `-` and `_`.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let ok =
            !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !ok {
            return Err("must be a meter event name: 1 to 100 letters, digits, - or _");
        }
        Ok(Self(s.to_owned()))
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A Stripe key a provider connects: a restricted key (`rk_live_…`, `rk_test_…`), or a secret
/// key (`sk_…`) though a restricted one with only meter-event writes is advised.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeApiKey(String);

impl std::fmt::Debug for StripeApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApiKey(")?;
        f.write_str(&self.hint())?;
        f.write_str(")")
    }
}

impl StripeApiKey {
    /// # Errors
    /// Anything but `rk_live_`, `rk_test_`, `sk_live_` or `sk_test_` followed by 8 to 247
    /// letters, digits or underscores.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        let rest = ["rk_live_", "rk_test_", "sk_live_", "sk_test_"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .ok_or("must be a Stripe restricted key (rk_live_… or rk_test_…) or secret key (sk_…)")?;
        if rest.len() < 8 || s.len() > 255 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("must be a whole Stripe key: its prefix, then at least 8 letters or digits");
        }
        Ok(Self(s.to_owned()))
    }

    /// The key's kind and last four characters, to recognise it by (`rk_test_…wxyz`).
    #[must_use]
    pub fn hint(&self) -> String {
        let kind = &self.0[..8];
        let tail = &self.0[self.0.len() - 4..];
        format!("{kind}…{tail}")
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids() {
        assert!(StripeCustomerId::parse("cus_NffrFeUfNV2Hib").is_ok());
        for bad in ["", "cus_", "cus_a b", "acct_123", "cus_é", &format!("cus_{}", "a".repeat(252))] {
            assert!(StripeCustomerId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meter_event_names() {
        assert!(MeterEventName::parse("api_requests-v2").is_ok());
        for bad in ["", "a b", "a.b", &"a".repeat(101)] {
            assert!(MeterEventName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_shown_only_as_a_hint() {
        let k = StripeApiKey::parse(" rk_test_51Habcdefghwxyz ").expect("a restricted key");
        assert_eq!(k.hint(), "rk_test_…wxyz");
        assert_eq!(format!("{k:?}"), "StripeApiKey(rk_test_…wxyz)");
        for bad in ["", "pk_test_abcdefghij", "rk_test_short", "rk_test_abc defghij", "whsec_abcdefghij"] {
            assert!(StripeApiKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
