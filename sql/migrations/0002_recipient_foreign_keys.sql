-- Materialization inserts every recipient of a campaign in one statement (a million rows for
-- a big store), and each foreign key of campaign_recipients runs a trigger per inserted row:
-- about 3 to 4 s per key per million rows. Two of the three keys are dropped.
--
-- store_id: redundant. A recipient's store is its campaign's store, and deleting a store
-- already deletes its campaigns (campaigns.store_id cascades), whose recipients follow
-- (campaign_recipients.campaign_id cascades, and stays).
--
-- contact_id: the check is the most expensive of the three (one probe of contacts per row)
-- and guards nothing the inserting statement does not already ensure: materialize copies ids
-- from contacts in the same statement. Its ON DELETE SET NULL is now done by the contact
-- deletion itself (contacts.delete), in the same statement as the DELETE: it finds the rows
-- through campaign_recipients_campaign_contact_key (campaign_id, contact_id), one probe per
-- campaign of the contact's store, so no index on contact_id is added to slow every insert.
-- A contact_id that no longer names a contact reads like NULL everywhere (the claim
-- LEFT JOINs contacts and skips a recipient without an opted-in contact).
ALTER TABLE campaign_recipients
    DROP CONSTRAINT campaign_recipients_store_id_fkey,
    DROP CONSTRAINT campaign_recipients_contact_id_fkey;
