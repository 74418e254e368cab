CREATE DATABASE warehouse OWNER insights;
