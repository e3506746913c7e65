//! flowaudit: audits the SQL an application issues while its user flows run.
