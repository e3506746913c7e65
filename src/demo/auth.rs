//! Users: registration with a salted password hash (Argon2id, PHC string
//! format), never the password itself.

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

use super::db::{Conn, Db};
use super::{DemoError, Result};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub full_name: &'a str,
}

/// Registers a user. An email can be registered once.
pub async fn register(db: &Db, new: &NewUser<'_>) -> Result<User> {
    let password_hash = hash_password(new.password)?;
    let mut pooled = db.acquire().await?;
    let mut conn = db.conn(&mut pooled);
    if find_by_email(&mut conn, new.email).await?.is_some() {
        return Err(DemoError::Rejected(format!(
            "{} is already registered",
            new.email
        )));
    }
    let id = sqlx::query("INSERT INTO users (email, full_name, password_hash) VALUES (?, ?, ?)")
        .bind(new.email)
        .bind(new.full_name)
        .bind(&password_hash)
        .execute(conn.run().await?)
        .await?
        .last_insert_rowid();
    Ok(User {
        id,
        email: new.email.to_owned(),
        full_name: new.full_name.to_owned(),
    })
}

pub async fn find(conn: &mut Conn<'_>, id: i64) -> Result<User> {
    let user = sqlx::query_as(
        "SELECT users.id, users.email, users.full_name FROM users WHERE users.id = ?",
    )
    .bind(id)
    .fetch_optional(conn.run().await?)
    .await?;
    user.ok_or_else(|| DemoError::Rejected(format!("no user {id}")))
}

async fn find_by_email(conn: &mut Conn<'_>, email: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as(
        "SELECT users.id, users.email, users.full_name FROM users WHERE users.email = ?",
    )
    .bind(email)
    .fetch_optional(conn.run().await?)
    .await?)
}

/// Argon2id with a random salt. The cost is lowered from the crate's default
/// (19 MiB, 2 passes) so that the demo and its benchmark measure SQL, not
/// hashing; a real application keeps `Params::default()` or stronger.
fn hash_password(password: &str) -> Result<String> {
    let params = Params::new(1024, 1, 1, None).map_err(|e| DemoError::Password(e.to_string()))?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DemoError::Password(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::hash_password;

    #[test]
    fn hashes_are_salted_and_never_the_password() {
        let a = hash_password("hunter2").expect("hash");
        let b = hash_password("hunter2").expect("hash");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$") && !a.contains("hunter2"), "{a}");
    }
}
