"""TrakSense Telemetry: a multi-tenant telemetry store on plain PostgreSQL."""
