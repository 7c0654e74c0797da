-- Read access for Grafana and people: the NOLOGIN role ragbench_reader gets SELECT on every v_*
-- view of the public schema, and nothing on the tables (a view reads its tables with its owner's
-- rights, so the views are all it can see). Login roles such as Grafana's are made members of it
-- (docker/postgres-init/10-ragbench.sh creates both).
--
-- Every migration drops and recreates the views, which drops their grants, so this file runs last
-- of sql/views/ and grants again each time. Default privileges would not do: they cannot tell a
-- view from a table. A database without the role (the embedded default) is left as it is. (No
-- format() here: the migration runner's driver reads a percent sign as a query placeholder.)
DO $grants$
DECLARE
    view_name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ragbench_reader') THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA public TO ragbench_reader;
    FOR view_name IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'v' AND starts_with(c.relname, 'v_')
    LOOP
        EXECUTE 'GRANT SELECT ON public.' || quote_ident(view_name) || ' TO ragbench_reader';
    END LOOP;
END
$grants$;
