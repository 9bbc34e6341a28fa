//! Billing through Stripe, when it is configured: plans from the configuration, each tenant's
//! plan and limits. Without a Stripe secret key billing is off: every limit is unlimited and
//! nothing contacts Stripe, so a self-hosted install does not notice billing at all.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::plan::Limits;

pub mod stripe;

/// `[billing]` as written in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawBilling {
    pub stripe_secret_key: Option<String>,
    pub stripe_secret_key_file: Option<std::path::PathBuf>,
    pub stripe_webhook_secret: Option<String>,
    pub stripe_webhook_secret_file: Option<std::path::PathBuf>,
    pub stripe_api_base: String,
    pub default_plan: String,
    /// How long a past-due subscription keeps its plan's limits.
    pub past_due_grace_days: u32,
    /// The Stripe Billing Meter event that carries each team's hourly verifications.
    pub meter_event_name: String,
    pub plans: BTreeMap<String, RawPlan>,
}

impl Default for RawBilling {
    fn default() -> Self {
        Self {
            stripe_secret_key: None,
            stripe_secret_key_file: None,
            stripe_webhook_secret: None,
            stripe_webhook_secret_file: None,
            stripe_api_base: "https://api.stripe.com".into(),
            default_plan: "free".into(),
            past_due_grace_days: 7,
            meter_event_name: "keyroll_verifications".into(),
            plans: BTreeMap::new(),
        }
    }
}

/// Stripe's API address (`stripe_api_base`), without a trailing slash. Teams' own Stripe
/// accounts (billing their consumers) are reached there too, billing on or off.
///
/// # Errors
/// A message naming the setting, when it is not an http(s) URL.
pub fn api_base(raw: &str) -> Result<String, String> {
    let base = raw.trim_end_matches('/').to_owned();
    if !url::Url::parse(&base).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some()) {
        return Err("KEYROLL_BILLING__STRIPE_API_BASE: must be an http(s) URL".into());
    }
    Ok(base)
}

/// `[billing.plans.<id>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPlan {
    pub name: String,
    /// The subscription's flat price; a subscription is matched to its plan by it.
    pub price_id: Option<String>,
    /// The overage price, fed by the meter.
    pub metered_price_id: Option<String>,
    pub limits: Limits,
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub price_id: Option<String>,
    pub metered_price_id: Option<String>,
    pub limits: Limits,
}

/// Billing, checked at start-up; present only when a Stripe secret key is configured.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub stripe_secret_key: SecretString,
    pub stripe_webhook_secret: Option<SecretString>,
    /// Without a trailing slash.
    pub stripe_api_base: String,
    pub default_plan: String,
    pub past_due_grace_days: u32,
    pub meter_event_name: String,
    pub plans: BTreeMap<String, Plan>,
    /// The default plan (also under `plans`).
    default: Plan,
}

impl BillingSettings {
    /// Checks `[billing]`: `None` when no secret key is given (billing off).
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn from_raw(
        raw: RawBilling,
        secret_key: Option<String>,
        webhook_secret: Option<String>,
    ) -> Result<Option<Self>, String> {
        let Some(key) = secret_key.filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            return Err(
                "KEYROLL_BILLING__STRIPE_SECRET_KEY: must be a Stripe secret (sk_…) or restricted (rk_…) key".into()
            );
        }
        if let Some(w) = &webhook_secret
            && !w.starts_with("whsec_")
        {
            return Err("KEYROLL_BILLING__STRIPE_WEBHOOK_SECRET: must be a whsec_… signing secret".into());
        }
        let base = api_base(&raw.stripe_api_base)?;
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 100 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        };
        if !name_ok(&raw.meter_event_name) {
            return Err("KEYROLL_BILLING__METER_EVENT_NAME: letters, digits, - and _ (at most 100)".into());
        }
        let mut plans = BTreeMap::new();
        for (id, p) in raw.plans {
            let ok_id = !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
            if !ok_id {
                return Err(format!("KEYROLL_BILLING__PLANS: {id:?} must be lowercase letters, digits, - and _"));
            }
            let name = if p.name.trim().is_empty() { id.clone() } else { p.name.trim().to_owned() };
            for (field, v) in [("price_id", &p.price_id), ("metered_price_id", &p.metered_price_id)] {
                if v.as_ref().is_some_and(|v| !v.starts_with("price_")) {
                    return Err(format!(
                        "KEYROLL_BILLING__PLANS__{}__{}: must be a Stripe price id (price_…)",
                        id.to_uppercase(),
                        field.to_uppercase()
                    ));
                }
            }
            plans.insert(
                id.clone(),
                Plan { id, name, price_id: p.price_id, metered_price_id: p.metered_price_id, limits: p.limits },
            );
        }
        let Some(default) = plans.get(&raw.default_plan).cloned() else {
            return Err(format!(
                "KEYROLL_BILLING__DEFAULT_PLAN: {:?} is not one of the plans under [billing.plans]",
                raw.default_plan
            ));
        };
        let mut prices = std::collections::BTreeSet::new();
        for p in plans.values() {
            if let Some(price) = &p.price_id
                && !prices.insert(price.clone())
            {
                return Err(format!("KEYROLL_BILLING__PLANS: the price {price} is given to two plans"));
            }
        }
        Ok(Some(Self {
            stripe_secret_key: key.into(),
            stripe_webhook_secret: webhook_secret.map(Into::into),
            stripe_api_base: base,
            default_plan: raw.default_plan,
            past_due_grace_days: raw.past_due_grace_days.min(90),
            meter_event_name: raw.meter_event_name,
            plans,
            default,
        }))
    }

    /// The plan called `id`, else the default plan.
    #[must_use]
    pub fn plan(&self, id: &str) -> &Plan {
        self.plans.get(id).unwrap_or(&self.default)
    }

    /// The plan whose flat price is `price_id`.
    #[must_use]
    pub fn plan_of_price(&self, price_id: &str) -> Option<&Plan> {
        self.plans.values().find(|p| p.price_id.as_deref() == Some(price_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(default: &str, plans: &[(&str, Option<&str>)]) -> RawBilling {
        RawBilling {
            default_plan: default.into(),
            plans: plans
                .iter()
                .map(|(id, price)| {
                    ((*id).to_owned(), RawPlan { price_id: price.map(str::to_owned), ..RawPlan::default() })
                })
                .collect(),
            ..RawBilling::default()
        }
    }

    #[test]
    fn without_a_secret_key_billing_is_off() {
        let off = BillingSettings::from_raw(raw("nothing", &[]), None, None).expect("valid");
        assert!(off.is_none(), "no key: off, whatever else is set");
        let off = BillingSettings::from_raw(raw("free", &[]), Some("  ".into()), None).expect("valid");
        assert!(off.is_none());
    }

    #[test]
    fn plans_are_checked_and_matched_by_price() {
        let key = Some("sk_test_1".to_owned());
        let b =
            BillingSettings::from_raw(raw("free", &[("free", None), ("pro", Some("price_pro"))]), key.clone(), None)
                .expect("valid")
                .expect("on");
        assert_eq!(b.plan("unknown").id, "free", "an unknown plan id reads as the default plan");
        assert_eq!(b.plan_of_price("price_pro").map(|p| p.id.as_str()), Some("pro"));
        assert_eq!(b.plans["pro"].name, "pro", "a plan without a name is called by its id");
        let errors = [
            (raw("gold", &[("free", None)]), key.clone(), None, "KEYROLL_BILLING__DEFAULT_PLAN"),
            (raw("free", &[("free", Some("prod_1"))]), key.clone(), None, "PRICE_ID"),
            (raw("free", &[("free", Some("price_1")), ("pro", Some("price_1"))]), key.clone(), None, "two plans"),
            (raw("free", &[("Free Plan", None)]), key.clone(), None, "KEYROLL_BILLING__PLANS"),
            (raw("free", &[("free", None)]), Some("pk_test_1".into()), None, "STRIPE_SECRET_KEY"),
            (raw("free", &[("free", None)]), key.clone(), Some("secret".into()), "STRIPE_WEBHOOK_SECRET"),
        ];
        for (r, k, w, names) in errors {
            let e = BillingSettings::from_raw(r, k, w).expect_err("refused");
            assert!(e.contains(names), "{e}");
        }
        let mut bad_base = raw("free", &[("free", None)]);
        bad_base.stripe_api_base = "ftp://stripe".into();
        assert!(BillingSettings::from_raw(bad_base, key, None).expect_err("refused").contains("API_BASE"));
    }
}
