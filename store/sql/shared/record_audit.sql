-- Appends one entry to the audit log: who did what to which target, when, and how it ended.
INSERT INTO audit (at, user_name, action, target, result)
VALUES (:at, :user_name, :action, :target, :result)
