-- SECURITY DEFINER functions search the session's temporary schema last.
--
-- A function's `SET search_path = pg_catalog, public` does not exclude
-- pg_temp: PostgreSQL searches it first for tables and views when the path
-- does not name it. A session able to run SQL as the app role could then
-- shadow `products` or `users` with a temporary view, and the definer
-- function, running as the schema's owner (to whom row-level security does
-- not apply), would read the view, and any function the view calls would run
-- as the owner too. Naming pg_temp last, as PostgreSQL's guide to writing
-- SECURITY DEFINER functions safely advises, closes that. Every definer
-- function of the schema is altered, whichever migration made it; a test
-- checks that each one, later ones included, has this path.
--
-- (`stock-tracker migrate` also revokes TEMPORARY on the database from
-- PUBLIC on every run: a database-level grant, which CREATE DATABASE does
-- not copy from a template.)
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END
$$;
