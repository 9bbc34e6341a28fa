//! Optional two-factor sign-in: a user's TOTP secret (sealed with the master key), and sessions
//! that have passed the password but not yet the code.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer_null, boolean, string_null};

#[derive(DeriveIden)]
enum Users {
    Table,
    TotpSecret,
    TotpLastStep,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    MfaPending,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Users::Table).add_column(string_null(Users::TotpSecret)).to_owned()).await?;
        // The last time step accepted: a code is accepted once (RFC 6238, section 5.2).
        m.alter_table(Table::alter().table(Users::Table).add_column(big_integer_null(Users::TotpLastStep)).to_owned())
            .await?;
        m.alter_table(
            Table::alter().table(Sessions::Table).add_column(boolean(Sessions::MfaPending).default(false)).to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::MfaPending).to_owned()).await?;
        m.alter_table(Table::alter().table(Users::Table).drop_column(Users::TotpLastStep).to_owned()).await?;
        m.alter_table(Table::alter().table(Users::Table).drop_column(Users::TotpSecret).to_owned()).await
    }
}
