-- IRIS tool store for PostgreSQL (Supabase). Apply with:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f infra/sql/001_tool_store.sql
-- Idempotent. Tables live in their own schema, which Supabase's REST API does not expose,
-- with row level security on and no policy: only the service connection reaches them.
-- Times are epoch seconds (double precision), as in the SQLite adapter.

CREATE SCHEMA IF NOT EXISTS iris;

CREATE TABLE IF NOT EXISTS iris.tool_events (
    id           text PRIMARY KEY,
    project_id   text NOT NULL,
    session_id   text,
    execution_id text,
    event        text NOT NULL,
    metadata     jsonb NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_events_project ON iris.tool_events (project_id, created_at);

CREATE TABLE IF NOT EXISTS iris.tool_evaluations (
    id           text PRIMARY KEY,
    project_id   text NOT NULL,
    session_id   text,
    execution_id text,
    input        text NOT NULL,
    output       text NOT NULL,
    verdict      text NOT NULL CHECK (verdict IN ('correct', 'incorrect', 'partial')),
    score        double precision NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_evaluations_project ON iris.tool_evaluations (project_id, created_at);

CREATE TABLE IF NOT EXISTS iris.tool_votes (
    project_id   text NOT NULL,
    consensus_id text NOT NULL,
    agent_id     text NOT NULL,
    vote         text NOT NULL CHECK (vote IN ('approve', 'reject', 'abstain')),
    session_id   text,
    execution_id text,
    updated_at   double precision NOT NULL,
    PRIMARY KEY (project_id, consensus_id, agent_id)
);

CREATE TABLE IF NOT EXISTS iris.tool_prompt_heads (
    project_id text NOT NULL,
    name       text NOT NULL,
    latest     integer NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS iris.tool_prompts (
    project_id text NOT NULL,
    name       text NOT NULL,
    version    integer NOT NULL,
    template   text NOT NULL,
    variables  jsonb NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (project_id, name, version)
);

CREATE TABLE IF NOT EXISTS iris.tool_lineage (
    id         text PRIMARY KEY,
    project_id text NOT NULL,
    signature  text NOT NULL,
    parent_id  text,
    input      jsonb NOT NULL,
    output     jsonb NOT NULL,
    created_at double precision NOT NULL,
    seq        bigserial
);
CREATE INDEX IF NOT EXISTS tool_lineage_signature ON iris.tool_lineage (project_id, signature, created_at);

CREATE TABLE IF NOT EXISTS iris.tool_metrics (
    id           text PRIMARY KEY,
    project_id   text NOT NULL,
    session_id   text,
    execution_id text,
    metric       text NOT NULL,
    value        double precision NOT NULL,
    tags         jsonb NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_metrics_name ON iris.tool_metrics (project_id, metric, created_at);

-- Bytes the project's tool calls have stored (its storage quota, IRIS_TOOL_STORAGE_QUOTA_BYTES).
CREATE TABLE IF NOT EXISTS iris.tool_usage (
    project_id text PRIMARY KEY,
    bytes      bigint NOT NULL
);

ALTER TABLE iris.tool_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_evaluations ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_votes ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_prompt_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_prompts ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_lineage ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE iris.tool_usage ENABLE ROW LEVEL SECURITY;
