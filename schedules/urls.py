from django.urls import path

from schedules import apis

urlpatterns = [
    path("dwh/schedules", apis.ScheduleCollectionApi.as_view(), name="schedule-collection"),
    path("dwh/schedules/<str:schedule_id>", apis.ScheduleDetailApi.as_view(), name="schedule-detail"),
    path("dwh/schedules/<str:schedule_id>/run", apis.ScheduleRunApi.as_view(), name="schedule-run"),
]
