-- Run once by the postgres:15 image on its first start (mounted into
-- /docker-entrypoint-initdb.d by compose.yaml), as POSTGRES_USER in
-- POSTGRES_DB (saga, sagad's database): the example participants' own
-- database. Each service keeps its data, and libsaga's barrier table, in
-- its own database; the participants create their tables themselves.
CREATE DATABASE shop;
