"""The example's database: one async engine for the app and its jobs, and the users table."""

from __future__ import annotations

import os

from sqlalchemy import String
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import djctl

DATABASE_URL = os.environ.get("DJ_DATABASE_URL", "sqlite:///signup.sqlite3")
djctl.configure(database_url=DATABASE_URL, app="jobs")


def async_url(url: str) -> str:
    """The same database through an async driver: aiosqlite, or psycopg's async mode."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


engine = create_async_engine(async_url(DATABASE_URL))
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "example_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    welcomed: Mapped[bool] = mapped_column(default=False)
