//! Passkeys (WebAuthn, `webauthn-rs`): fingerprint or face sign-in.
//!
//! A signed-in customer registers a passkey; later they sign in with it
//! alone — it is possession and biometrics (user verification is required),
//! so it counts as strong on its own. Sign-in is *discoverable* (the device
//! offers its credentials; the server names no account), so it cannot be
//! used to find out whether a number has a wallet. The server's ceremony
//! state lives in the database for five minutes and is used once.
//!
//! A passkey also confirms an operation (a step-up, see `factors.rs`): then
//! the server names the customer's credentials (`allowCredentials`), the
//! request state lives in the step-up challenge's row, and a good assertion
//! marks that challenge verified like a correct code would.

use coffer_store::sql::Sql;
use coffer_store::sql_params;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::{
    random_hex, Context, Identity, IdentityError, NewSession, Operation, SessionInfo,
    NANOS_PER_SECOND,
};

const CEREMONY_TTL_SECONDS: i64 = 300;
/// The step-up operation that adding or removing a passkey needs.
pub const OPERATION_PASSKEY_CHANGE: &str = "passkey_change";

/// What a passkey change's step-up is bound to: no money (amount 0), the
/// customer's own passkeys.
pub fn passkey_change_operation() -> Operation {
    Operation {
        kind: OPERATION_PASSKEY_CHANGE.to_string(),
        amount: 0,
        currency: "CNY".to_string(),
        payee: "passkeys".to_string(),
    }
}

pub const PASSKEYS_PER_CUSTOMER_MAX: i64 = 10;

/// Where passkeys are valid: the relying party id (the bank's domain) and
/// the origins the web app is served from.
#[derive(Debug, Clone)]
pub struct PasskeySettings {
    pub rp_id: String,
    pub origin: String,
}

impl Default for PasskeySettings {
    fn default() -> PasskeySettings {
        PasskeySettings {
            rp_id: "localhost".into(),
            origin: "http://localhost:8080".into(),
        }
    }
}

pub(crate) fn build(settings: &PasskeySettings) -> Result<Webauthn, IdentityError> {
    let origin = Url::parse(&settings.origin)
        .map_err(|e| IdentityError::Internal(format!("passkey origin: {e}")))?;
    WebauthnBuilder::new(&settings.rp_id, &origin)
        .and_then(|b| b.rp_name("Coffer").build())
        .map_err(|e| IdentityError::Internal(format!("passkeys: {e}")))
}

/// The WebAuthn user handle of a customer: stable, and not their id.
fn user_handle(customer_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("coffer passkey user\0{customer_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

pub(crate) fn invalid_credential() -> IdentityError {
    IdentityError::invalid("credential", "the passkey's answer did not verify")
}

/// A registered passkey, for the customer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Identity {
    fn webauthn(&self) -> Result<&Webauthn, IdentityError> {
        self.webauthn
            .as_ref()
            .ok_or_else(|| IdentityError::Internal("passkeys are not configured".into()))
    }

    fn save_ceremony(
        &self,
        customer_id: Option<&str>,
        kind: &str,
        state: &str,
    ) -> Result<String, IdentityError> {
        let id = format!("pkc_{}", random_hex(12));
        let expires = self.now() + CEREMONY_TTL_SECONDS * NANOS_PER_SECOND;
        self.sql.run(|db| {
            db.execute(
                "INSERT INTO passkey_ceremonies (id, customer_id, kind, state, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, NULL)",
                sql_params![id.as_str(), customer_id, kind, state, expires],
            )
        })?;
        Ok(id)
    }

    /// Takes a ceremony's state, once.
    fn take_ceremony(
        &self,
        id: &str,
        kind: &str,
        customer_id: Option<&str>,
    ) -> Result<String, IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<String, IdentityError> {
            let row = db
                .query_opt(
                    "SELECT state, customer_id FROM passkey_ceremonies WHERE id = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3",
                    sql_params![id, kind, now],
                )?
                .ok_or(IdentityError::ChallengeInvalid)?;
            if row.opt_text(1)?.as_deref() != customer_id {
                return Err(IdentityError::ChallengeInvalid);
            }
            db.execute(
                "UPDATE passkey_ceremonies SET used_at = $2 WHERE id = $1",
                sql_params![id, now],
            )?;
            Ok(row.text(0)?)
        })
    }

    /// Starts registering a passkey for a signed-in customer, on a verified
    /// step-up for `passkey_change_operation()`: a session alone (a stolen
    /// cookie) must not be able to plant a way back in. The step-up is
    /// spent here; the ceremony it opens is the customer's and expires.
    pub fn start_passkey_registration(
        &self,
        info: &SessionInfo,
        step_up_challenge_id: &str,
    ) -> Result<(String, CreationChallengeResponse), IdentityError> {
        let customer = self.customer(&info.customer_id)?;
        self.consume_step_up_now(
            &info.customer_id,
            step_up_challenge_id,
            &passkey_change_operation(),
        )?;
        let existing = self.passkeys_of(&info.customer_id)?;
        if existing.len() as i64 >= PASSKEYS_PER_CUSTOMER_MAX {
            return Err(IdentityError::Conflict(
                "too many passkeys; remove one first",
            ));
        }
        let exclude = existing
            .iter()
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = self
            .webauthn()?
            .start_passkey_registration(
                user_handle(&info.customer_id),
                &customer.contact_masked,
                customer.display_name.expose(),
                Some(exclude),
            )
            .map_err(|e| IdentityError::Internal(format!("passkey registration: {e}")))?;
        let state =
            serde_json::to_string(&state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let id = self.save_ceremony(Some(&info.customer_id), "register", &state)?;
        Ok((id, options))
    }

    /// Verifies the authenticator's answer and stores the passkey.
    pub fn finish_passkey_registration(
        &self,
        info: &SessionInfo,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
        name: &str,
        context: &Context,
    ) -> Result<PasskeyView, IdentityError> {
        let state = self.take_ceremony(ceremony_id, "register", Some(&info.customer_id))?;
        let state: PasskeyRegistration =
            serde_json::from_str(&state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let passkey = self
            .webauthn()?
            .finish_passkey_registration(credential, &state)
            .map_err(|_| invalid_credential())?;
        let id = data_encoding(passkey.cred_id().as_ref());
        let stored =
            serde_json::to_string(&passkey).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let name: String = name
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(60)
            .collect();
        let name = if name.is_empty() {
            "Passkey".to_string()
        } else {
            name
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let inserted = db.execute(
                "INSERT INTO passkeys (credential_id, customer_id, passkey, name, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING",
                sql_params![id.as_str(), info.customer_id.as_str(), stored, name.as_str(), now],
            )?;
            if inserted != 1 {
                return Err(IdentityError::Conflict("this passkey is already registered"));
            }
            self.event(db, Some(&info.customer_id), "passkey_added", context, &name)?;
            self.security_alert(
                db,
                &info.customer_id,
                "factor_added",
                "A passkey was added to your Coffer wallet. If this was not you, contact the bank at once. \
                 您的 Coffer 钱包已添加通行密钥；如非本人操作，请立即联系银行。",
            )
        })?;
        Ok(PasskeyView {
            id,
            name,
            created_at: now,
            last_used_at: None,
        })
    }

    /// WebAuthn request options naming the customer's passkeys, with user
    /// verification required, and the server state to check the answer by
    /// (stored by the caller with the step-up challenge).
    pub(crate) fn start_passkey_assertion(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
    ) -> Result<(RequestChallengeResponse, String), IdentityError> {
        let webauthn = self.webauthn()?;
        let passkeys = db
            .query(
                "SELECT passkey FROM passkeys WHERE customer_id = $1 ORDER BY created_at",
                sql_params![customer_id],
            )?
            .iter()
            .map(|r| {
                serde_json::from_str::<Passkey>(&r.text(0)?)
                    .map_err(|e| IdentityError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(IdentityError::invalid(
                "method",
                "no passkey is registered; add one first or use method \"code\"",
            ));
        }
        let (options, state) = webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| IdentityError::Internal(format!("passkey step-up: {e}")))?;
        let state =
            serde_json::to_string(&state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        Ok((options, state))
    }

    /// Checks an assertion against the state `start_passkey_assertion` made:
    /// signature, challenge, origin, user verification, and a credential
    /// that is still this customer's. On success the passkey's signature
    /// counter is updated in the caller's transaction.
    pub(crate) fn check_passkey_assertion(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        state: &str,
        assertion: &PublicKeyCredential,
    ) -> Result<bool, IdentityError> {
        let state: PasskeyAuthentication =
            serde_json::from_str(state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let Ok(result) = self
            .webauthn()?
            .finish_passkey_authentication(assertion, &state)
        else {
            return Ok(false);
        };
        let id = data_encoding(result.cred_id().as_ref());
        // Removed since the challenge was issued: no longer a way in.
        let Some(row) = db.query_opt(
            "SELECT passkey FROM passkeys WHERE credential_id = $1 AND customer_id = $2",
            sql_params![id.as_str(), customer_id],
        )?
        else {
            return Ok(false);
        };
        let mut passkey: Passkey = serde_json::from_str(&row.text(0)?)
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        passkey.update_credential(&result);
        let stored =
            serde_json::to_string(&passkey).map_err(|e| IdentityError::Internal(e.to_string()))?;
        db.execute(
            "UPDATE passkeys SET passkey = $2, last_used_at = $3 WHERE credential_id = $1",
            sql_params![id.as_str(), stored, self.now()],
        )?;
        Ok(true)
    }

    fn passkeys_of(&self, customer_id: &str) -> Result<Vec<Passkey>, IdentityError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT passkey FROM passkeys WHERE customer_id = $1",
                sql_params![customer_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(&r.text(0)?)
                    .map_err(|e| IdentityError::Internal(e.to_string()))
            })
            .collect()
    }

    pub fn passkeys(&self, info: &SessionInfo) -> Result<Vec<PasskeyView>, IdentityError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT credential_id, name, created_at, last_used_at FROM passkeys WHERE customer_id = $1 ORDER BY created_at",
                sql_params![info.customer_id.as_str()],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(PasskeyView {
                    id: r.text(0)?,
                    name: r.text(1)?,
                    created_at: r.int(2)?,
                    last_used_at: r.opt_int(3)?,
                })
            })
            .collect()
    }

    /// Removes one of the customer's passkeys: it no longer signs in or
    /// answers a step-up (a challenge issued before is refused too, see
    /// `check_passkey_assertion`). Audited, and the customer is alerted.
    pub fn remove_passkey(
        &self,
        info: &SessionInfo,
        passkey_id: &str,
        step_up_challenge_id: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            self.consume_step_up(
                db,
                &info.customer_id,
                step_up_challenge_id,
                &passkey_change_operation(),
            )?;
            let Some(row) = db.query_opt(
                "SELECT name FROM passkeys WHERE credential_id = $1 AND customer_id = $2",
                sql_params![passkey_id, info.customer_id.as_str()],
            )?
            else {
                return Err(IdentityError::NotFound("no such passkey"));
            };
            let name = row.text(0)?;
            db.execute(
                "DELETE FROM passkeys WHERE credential_id = $1 AND customer_id = $2",
                sql_params![passkey_id, info.customer_id.as_str()],
            )?;
            self.event(db, Some(&info.customer_id), "passkey_removed", context, &name)?;
            self.security_alert(
                db,
                &info.customer_id,
                "factor_removed",
                "A passkey was removed from your Coffer wallet. If this was not you, contact the bank at once. \
                 您的 Coffer 钱包已删除一个通行密钥；如非本人操作，请立即联系银行。",
            )
        })
    }

    /// Starts a passkey sign-in; names no account.
    pub fn start_passkey_sign_in(
        &self,
    ) -> Result<(String, RequestChallengeResponse), IdentityError> {
        let (options, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(|e| IdentityError::Internal(format!("passkey sign-in: {e}")))?;
        let state =
            serde_json::to_string(&state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let id = self.save_ceremony(None, "authenticate", &state)?;
        Ok((id, options))
    }

    /// Verifies a passkey assertion and opens a session.
    pub fn finish_passkey_sign_in(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        context: &Context,
    ) -> Result<NewSession, IdentityError> {
        let state = self.take_ceremony(ceremony_id, "authenticate", None)?;
        let state: DiscoverableAuthentication =
            serde_json::from_str(&state).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let webauthn = self.webauthn()?;
        let (handle, credential_id) = webauthn
            .identify_discoverable_authentication(credential)
            .map_err(|_| invalid_credential())?;
        let id = data_encoding(credential_id);
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT p.customer_id, p.passkey, c.status FROM passkeys p JOIN customers c ON c.id = p.customer_id WHERE p.credential_id = $1",
                    sql_params![id.as_str()],
                )
            })?
            .ok_or_else(invalid_credential)?;
        let customer_id = row.text(0)?;
        if user_handle(&customer_id) != handle || row.text(2)? != "active" {
            return Err(invalid_credential());
        }
        let mut passkey: Passkey = serde_json::from_str(&row.text(1)?)
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        let result = webauthn
            .finish_discoverable_authentication_v2(credential, state, &passkey)
            .map_err(|_| invalid_credential())?;
        passkey.update_credential(&result);
        let stored =
            serde_json::to_string(&passkey).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let now = self.now();
        let session = self
            .sql
            .transaction(|db| -> Result<Option<NewSession>, IdentityError> {
                db.execute(
                    "UPDATE passkeys SET passkey = $2, last_used_at = $3 WHERE credential_id = $1",
                    sql_params![id.as_str(), stored, now],
                )?;
                // A passkey verified the user on the device: it is already
                // the second factor a risk step-up would ask for.
                if self.sign_in_risk(db, &customer_id, None, context)?
                    == crate::sign_in_risk::Verdict::Blocked
                {
                    return Ok(None);
                }
                self.event(db, Some(&customer_id), "signed_in", context, "passkey")?;
                self.open_session(db, &customer_id, context, now).map(Some)
            })?;
        session.ok_or_else(invalid_credential)
    }
}

/// Credential ids as unpadded base64url, as WebAuthn clients show them.
fn data_encoding(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
