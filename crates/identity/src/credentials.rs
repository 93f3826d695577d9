//! Changing a password while signed in, and resetting a forgotten one with
//! a code sent to the contact.
//!
//! A change needs the current password; wrong guesses count against the
//! same per-contact budget as sign-in (a password guess is a password guess
//! wherever it is typed), so a stolen session gains no extra tries. A reset
//! answers the same whether or not the contact has a wallet and sends a
//! code only when it does. Completing it also ends the sign-in lock of that
//! contact: the code proves the customer holds it, which is what a staff
//! unlock would check. A wallet with an authenticator app needs a code from
//! it (or a recovery code) as well: otherwise whoever swaps the SIM takes
//! the account. Either way every session ends and the customer is told.

use coffer_audit::{Entry, Outcome, ACTOR_ANONYMOUS};
use coffer_core::Secret;
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::factors::Method;
use crate::{
    random_hex, same, throttle, Contact, Context, Identity, IdentityError, SessionInfo,
    CONTACT_CONTEXT, NANOS_PER_SECOND,
};

/// Password resets one contact may start per hour (each sends a message).
pub const PASSWORD_RESETS_PER_CONTACT_PER_HOUR_MAX: i64 = 5;
/// Stored instead of a code hash when the contact has no wallet: not the
/// hash of anything, so no code completes that reset.
const NO_CUSTOMER: &str = "no-customer";

/// A password reset waiting for its code.
#[derive(Debug, Clone)]
pub struct PasswordReset {
    pub reset_id: String,
    pub expires_at: i64,
    pub sent_to: String,
}

impl Identity {
    /// Sets a new password for a signed-in customer who knows the current
    /// one; ends every other session. Returns how many were ended.
    pub fn change_password(
        &self,
        info: &SessionInfo,
        current: &Secret<String>,
        new_password: &Secret<String>,
        context: &Context,
    ) -> Result<u64, IdentityError> {
        let now = self.now();
        let customer_id = info.customer_id.as_str();
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT password_hash, contact_index, contact_enc FROM customers WHERE id = $1",
                    sql_params![customer_id],
                )
            })?
            .ok_or(IdentityError::NotFound("customer"))?;
        let stored_hash = row.text(0)?;
        let subjects = [
            format!("contact:{}", row.text(1)?),
            format!("ip:{}", context.ip),
        ];
        throttle::check(&self.sql, &subjects, now)?;
        let contact = self.decrypt_contact(&row.bytes(2)?)?;
        if !self.passwords.verify(&stored_hash, current) {
            let locked = self.sql.transaction(|db| -> Result<bool, IdentityError> {
                let locked = throttle::fail(db, &self.policy, &subjects, now)?;
                let actor = coffer_audit::customer_actor(customer_id);
                self.append(
                    db,
                    &Entry {
                        at: now,
                        actor: &actor,
                        action: "password_change_failed",
                        subject: Some(customer_id),
                        ip: &context.ip,
                        outcome: Outcome::Refused,
                        detail: "current password",
                    },
                )?;
                Ok(locked)
            })?;
            if locked {
                self.alert_locked(customer_id, &contact, context, now)?;
            }
            return Err(IdentityError::CurrentPasswordWrong);
        }
        self.passwords
            .check(new_password, contact.as_str())
            .map_err(IdentityError::WeakPassword)?;
        let new_hash = self
            .passwords
            .hash(new_password)
            .map_err(IdentityError::Internal)?;
        self.sql.transaction(|db| -> Result<u64, IdentityError> {
            // Only over the hash just verified: of two concurrent changes, one wins.
            let updated = db.execute(
                "UPDATE customers SET password_hash = $3, updated_at = $4 WHERE id = $1 AND password_hash = $2",
                sql_params![customer_id, stored_hash.as_str(), new_hash, now],
            )?;
            if updated != 1 {
                return Err(IdentityError::CurrentPasswordWrong);
            }
            let revoked = db.execute(
                "UPDATE sessions SET revoked_at = $3 WHERE customer_id = $1 AND id <> $2 AND revoked_at IS NULL",
                sql_params![customer_id, info.session_id.as_str(), now],
            )?;
            self.end_sign_ins_in_progress(db, customer_id, now)?;
            throttle::clear(db, &subjects[0])?;
            self.event(
                db,
                Some(customer_id),
                "password_changed",
                context,
                &format!("other sessions revoked: {revoked}"),
            )?;
            self.security_alert(
                db,
                customer_id,
                "password_changed",
                "The password of your Coffer wallet was changed and your other devices were signed out. \
                 If this was not you, reset your password and contact the bank at once. \
                 您的 Coffer 钱包密码已修改，其他设备已退出登录；如非本人操作，请立即重置密码并联系银行。",
            )?;
            Ok(revoked)
        })
    }

    /// Step one of a forgotten password: a code to the contact if it has a
    /// wallet, nothing otherwise; the same answer either way.
    pub fn start_password_reset(
        &self,
        contact: &str,
        context: &Context,
    ) -> Result<PasswordReset, IdentityError> {
        let contact = Contact::parse(contact).ok_or_else(|| {
            IdentityError::invalid(
                "contact",
                "expected a mobile number in international form (+8613800138000) or an e-mail address",
            )
        })?;
        let now = self.now();
        let index = self.vault.blind_index("contact", contact.as_str());
        let reset_id = format!("pwr_{}", random_hex(12));
        let code = crate::one_time_code();
        let expires_at = now + self.policy.code_ttl_seconds * NANOS_PER_SECOND;
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let recent = db
                .query_one(
                    "SELECT COUNT(*) FROM password_resets WHERE contact_index = $1 AND created_at > $2",
                    sql_params![index.as_str(), now - 3_600 * NANOS_PER_SECOND],
                )?
                .int(0)?;
            if recent >= PASSWORD_RESETS_PER_CONTACT_PER_HOUR_MAX {
                return Err(IdentityError::Throttled {
                    retry_after_seconds: 3_600,
                });
            }
            let owner = db
                .query_opt(
                    "SELECT id FROM customers WHERE contact_index = $1",
                    sql_params![index.as_str()],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            let code_hash = match &owner {
                Some(_) => self.reset_code_hash(&reset_id, &code),
                None => NO_CUSTOMER.to_string(),
            };
            db.execute(
                "INSERT INTO password_resets (id, contact_index, customer_id, code_hash, attempts, expires_at, completed_at, created_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, NULL, $6)",
                sql_params![
                    reset_id.as_str(),
                    index.as_str(),
                    owner.as_deref(),
                    code_hash,
                    expires_at,
                    now
                ],
            )?;
            if let Some(owner) = &owner {
                let minutes = self.policy.code_ttl_seconds / 60;
                self.send_to(
                    db,
                    &contact,
                    owner,
                    "password_reset_code",
                    format!(
                        "Your Coffer code to set a new password is {code}. It expires in {minutes} minutes. Never share it, \
                         not even with bank staff. If you did not ask for it, ignore this. \
                         您的 Coffer 重置密码验证码是 {code}，{minutes} 分钟内有效，请勿告诉任何人（包括银行员工）；如非本人操作，请忽略。"
                    ),
                )?;
            }
            // Whoever typed the contact is not signed in: anonymous, with
            // the customer (if any) as the subject.
            self.append(
                db,
                &Entry {
                    at: now,
                    actor: ACTOR_ANONYMOUS,
                    action: "password_reset_started",
                    subject: owner.as_deref(),
                    ip: &context.ip,
                    outcome: Outcome::Ok,
                    detail: &reset_id,
                },
            )?;
            Ok(())
        })?;
        Ok(PasswordReset {
            reset_id,
            expires_at,
            sent_to: contact.masked(),
        })
    }

    /// Step two: the code, the new password and, for a wallet with an
    /// authenticator app, a code from it or a recovery code. Sets the
    /// password, ends every session and sign-in in progress, lifts the
    /// sign-in lock of the contact, and tells the customer. Returns how many
    /// sessions were ended.
    pub fn complete_password_reset(
        &self,
        reset_id: &str,
        code: &Secret<String>,
        new_password: &Secret<String>,
        totp_code: Option<&Secret<String>>,
        context: &Context,
    ) -> Result<u64, IdentityError> {
        let now = self.now();
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT contact_index, customer_id, code_hash, attempts, expires_at, completed_at \
                     FROM password_resets WHERE id = $1",
                    sql_params![reset_id],
                )
            })?
            .ok_or(IdentityError::CodeInvalid)?;
        let usable = row.opt_int(5)?.is_none()
            && row.int(4)? > now
            && row.int(3)? < self.policy.code_attempts_max;
        let code_right = same(
            &self.reset_code_hash(reset_id, code.expose().trim()),
            &row.text(2)?,
        );
        let customer_id = row.opt_text(1)?;
        let Some(customer_id) = customer_id.filter(|_| usable && code_right) else {
            self.count_reset_attempt(reset_id, context)?;
            return Err(IdentityError::CodeInvalid);
        };
        let contact_index = row.text(0)?;
        // The customer must still sign in with the contact the code went to.
        let customer = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT contact_enc FROM customers WHERE id = $1 AND contact_index = $2 AND status = 'active'",
                    sql_params![customer_id.as_str(), contact_index.as_str()],
                )
            })?
            .ok_or(IdentityError::CodeInvalid)?;
        let contact = self.decrypt_contact(&customer.bytes(0)?)?;
        self.passwords
            .check(new_password, contact.as_str())
            .map_err(IdentityError::WeakPassword)?;
        let second_factor = self.has_totp(&customer_id)?;
        let totp_code = match (second_factor, totp_code) {
            (true, None) => return Err(IdentityError::SecondFactorRequired),
            (true, Some(totp_code)) => Some(totp_code),
            (false, _) => None,
        };
        let new_hash = self
            .passwords
            .hash(new_password)
            .map_err(IdentityError::Internal)?;
        let result = self.sql.transaction(|db| -> Result<u64, IdentityError> {
            if let Some(totp_code) = totp_code {
                if !self.answer(db, &customer_id, Method::Totp, totp_code.expose(), None)? {
                    return Err(IdentityError::SecondFactorInvalid);
                }
            }
            let claimed = db.execute(
                "UPDATE password_resets SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL",
                sql_params![reset_id, now],
            )?;
            if claimed != 1 {
                return Err(IdentityError::CodeInvalid);
            }
            // Other codes sent to this contact stop working too.
            db.execute(
                "UPDATE password_resets SET completed_at = $2 WHERE contact_index = $1 AND completed_at IS NULL",
                sql_params![contact_index.as_str(), now],
            )?;
            let updated = db.execute(
                "UPDATE customers SET password_hash = $3, updated_at = $4 WHERE id = $1 AND contact_index = $2",
                sql_params![customer_id.as_str(), contact_index.as_str(), new_hash, now],
            )?;
            if updated != 1 {
                return Err(IdentityError::CodeInvalid);
            }
            let revoked = db.execute(
                "UPDATE sessions SET revoked_at = $2 WHERE customer_id = $1 AND revoked_at IS NULL",
                sql_params![customer_id.as_str(), now],
            )?;
            self.end_sign_ins_in_progress(db, &customer_id, now)?;
            throttle::clear(db, &format!("contact:{contact_index}"))?;
            self.event(
                db,
                Some(&customer_id),
                "password_reset",
                context,
                &format!("sessions revoked: {revoked}; sign-in lock lifted"),
            )?;
            self.security_alert(
                db,
                &customer_id,
                "password_reset",
                "The password of your Coffer wallet was reset with a code sent here, and every device was signed out. \
                 If this was not you, contact the bank at once. \
                 您的 Coffer 钱包密码已通过验证码重置，所有设备已退出登录；如非本人操作，请立即联系银行。",
            )?;
            Ok(revoked)
        });
        if matches!(result, Err(IdentityError::SecondFactorInvalid)) {
            self.count_reset_attempt(reset_id, context)?;
        }
        if result.is_ok() {
            tracing::info!(customer = %customer_id, reset = %reset_id, "password reset");
        }
        result
    }

    fn reset_code_hash(&self, reset_id: &str, code: &str) -> String {
        self.vault
            .keyed_hash("password_reset", &format!("{reset_id}:{code}"))
    }

    /// Counts a wrong code against the reset and audits it; an id that
    /// names no reset counts nothing.
    fn count_reset_attempt(&self, reset_id: &str, context: &Context) -> Result<(), IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let Some(row) = db.query_opt(
                "UPDATE password_resets SET attempts = attempts + 1 WHERE id = $1 RETURNING customer_id",
                sql_params![reset_id],
            )?
            else {
                return Ok(());
            };
            let customer_id = row.opt_text(0)?;
            self.append(
                db,
                &Entry {
                    at: now,
                    actor: ACTOR_ANONYMOUS,
                    action: "password_reset_failed",
                    subject: customer_id.as_deref(),
                    ip: &context.ip,
                    outcome: Outcome::Refused,
                    detail: reset_id,
                },
            )
        })
    }

    /// A new password ends sign-ins waiting for their second factor: whoever
    /// typed the old password gets no session from it.
    fn end_sign_ins_in_progress(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        now: i64,
    ) -> Result<(), IdentityError> {
        db.execute(
            "UPDATE challenges SET consumed_at = $2 WHERE customer_id = $1 AND purpose = 'login' AND consumed_at IS NULL",
            sql_params![customer_id, now],
        )?;
        Ok(())
    }

    fn decrypt_contact(&self, contact_enc: &[u8]) -> Result<Contact, IdentityError> {
        let text = self.vault.decrypt_text(CONTACT_CONTEXT, contact_enc)?;
        Contact::parse(text.expose())
            .ok_or_else(|| IdentityError::Internal("stored contact does not parse".into()))
    }
}
