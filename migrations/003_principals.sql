-- 003_principals: PLACEHOLDER on branch sec-reports only, so that
-- 004_dispatch_key.sql has its predecessor (embed.py refuses gaps). The
-- real 003_principals.sql comes from the auth branch (sec-auth): on merge,
-- take that file's content and drop this one.
SELECT 1;
